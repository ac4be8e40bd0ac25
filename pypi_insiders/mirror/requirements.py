"""Pinned requirements files for `mirror prefetch`: `name==version`, optionally `--hash=sha256:...`.

What `pip-compile --generate-hashes`, `uv export --format requirements-txt` and `pip freeze`
write. No resolving: the pin list is the contract, so anything else (a range, a URL, an
include) is one clear error naming the file and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name

from pypi_insiders.errors import UsageError

_HASH: Final = re.compile(r"--hash[= ]sha256:([0-9a-fA-F]{64})")
_OPTION: Final = re.compile(
    r"--(?:index-url|extra-index-url|find-links|trusted-host|no-binary|only-binary)\b")


@dataclass(frozen=True)
class Pin:
    name: NormalizedName
    version: str
    hashes: frozenset[str]  # empty: every file of that version
    where: str  # FILE:LINE, for messages


def read_pins(path: Path) -> list[Pin]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        msg = f"{path}: cannot read: {getattr(error, 'strerror', None) or error}"
        raise UsageError(msg) from None
    pins = []
    for number, line in _logical_lines(text):
        pin = _parse(line, f"{path}:{number}")
        if pin is not None:
            pins.append(pin)
    return pins


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Lines joined at trailing backslashes, comments dropped, with the number of their first line."""
    out: list[tuple[int, str]] = []
    pending, first = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if not pending:
            first = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined = (pending + line).strip()
        pending = ""
        if joined:
            out.append((first, joined))
    if pending.strip():
        out.append((first, pending.strip()))
    return out


def _parse(line: str, where: str) -> Pin | None:
    if _OPTION.match(line):
        return None
    hashes = frozenset(h.lower() for h in _HASH.findall(line))
    spec = _HASH.sub("", line).strip()
    if spec.startswith("-"):
        msg = f"{where}: {spec.split()[0]} is not supported here: list pinned requirements only"
        raise UsageError(msg)
    try:
        requirement = Requirement(spec.split(";")[0].strip())
    except InvalidRequirement as error:
        msg = f"{where}: not a requirement: {spec!r} ({str(error).splitlines()[0]})"
        raise UsageError(msg) from None
    specifiers = list(requirement.specifier)
    if requirement.url or len(specifiers) != 1 or specifiers[0].operator not in ("==", "===") \
            or "*" in specifiers[0].version:
        msg = f"{where}: {spec!r} is not pinned: write NAME==VERSION (prefetch does not resolve)"
        raise UsageError(msg)
    return Pin(canonicalize_name(requirement.name), specifiers[0].version, hashes, where)
