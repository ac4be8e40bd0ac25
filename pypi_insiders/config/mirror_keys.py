"""The `[upstream]` keys of the mirror (`fallback = "mirror"`), each checked with its dotted path."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name

from pypi_insiders.config.model import MIRROR_ANONYMOUS, UpstreamConfig
from pypi_insiders.config.quantities import parse_duration, parse_size
from pypi_insiders.config.table import Table, one_of

T = TypeVar("T")
_PROJECT = re.compile(r"[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9]")


def mirror_keys(t: Table) -> dict[str, Any]:
    """The mirror's fields of UpstreamConfig; a bad value is recorded and its default kept."""
    return {
        "offline": t.get("offline", bool, UpstreamConfig.offline),
        "max_size": _parsed(t, "max_size", parse_size, UpstreamConfig.max_size),
        "min_free": _parsed(t, "min_free", parse_size, UpstreamConfig.min_free),
        "max_file_size": _parsed(t, "max_file_size", parse_size, UpstreamConfig.max_file_size),
        "file_timeout": _parsed(t, "file_timeout", parse_duration, UpstreamConfig.file_timeout),
        "keep_removed": t.get("keep_removed", bool, UpstreamConfig.keep_removed),
        "cooldown": _parsed(t, "cooldown", parse_duration, UpstreamConfig.cooldown),
        "cooldown_exempt": _names(t, "cooldown_exempt"),
        "cooldown_unknown": t.get("cooldown_unknown", str, UpstreamConfig.cooldown_unknown,
                                  one_of("hide", "show")),
        "allow": _names(t, "allow"),
        "deny": _deny(t),
        "anonymous": t.get("anonymous", str, "", lambda v: one_of(*MIRROR_ANONYMOUS)(v) if v else None),
    }


def _parsed(t: Table, key: str, parse: Callable[[Any], T], default: T) -> T:
    t.seen.add(key)
    if key not in t.data:
        return default
    try:
        return parse(t.data[key])
    except ValueError as error:
        t.problem(key, str(error))
        return default


def _names(t: Table, key: str) -> frozenset[NormalizedName]:
    names: set[NormalizedName] = set()
    for number, value in enumerate(t.get(key, list, [])):
        if not isinstance(value, str) or not _PROJECT.fullmatch(value):
            t.problem(f"{key}[{number}]", f"not a project name: {value!r}")
        else:
            names.add(canonicalize_name(value))
    return frozenset(names)


def _deny(t: Table) -> tuple[Requirement, ...]:
    """`"name"` refuses a project; `"name>=1.2,<1.4"` hides those versions. No extras, markers, URLs."""
    found: list[Requirement] = []
    for number, value in enumerate(t.get("deny", list, [])):
        try:
            requirement = Requirement(value) if isinstance(value, str) else None
        except InvalidRequirement as error:
            t.problem(f"deny[{number}]", f"not a name or a PEP 508 specifier: {value!r} "
                                         f"({str(error).splitlines()[0]})")
            continue
        if requirement is None or requirement.extras or requirement.marker or requirement.url:
            t.problem(f"deny[{number}]", f'expected "name" or "name<specifiers>", got {value!r}')
            continue
        found.append(requirement)
    return tuple(found)
