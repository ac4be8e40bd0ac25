"""Yanks made while the index runs (`pypi-insiders yank`, `POST /-/yank`): `<state>/yanked.json`.

PEP 592 yanking without editing the configuration. The file maps each project to its yanked
versions (normalized as file versions are), each with its reason, who yanked it and when. It is
state, not cache: it cannot be rebuilt from the store. `[yank.PROJECT]` tables in the config
keep working beside it; a version yanked there is un-yanked there only. Writers take a lock
and replace the file whole; the generator re-reads it when its stat changes and renders again
the projects whose yanks changed.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from pypi_insiders.errors import UsageError
from pypi_insiders.files import atomic_write, exclusive_lock
from pypi_insiders.index.pages import normalize_version_key
from pypi_insiders.state_layout import StateLayout

log = logging.getLogger(__name__)

MAX_REASON = 500  # characters; the public index's own limit is of the same order

Reasons = dict[NormalizedName, dict[str, str]]


@dataclass(frozen=True)
class Yank:
    reason: str
    by: str
    at: float  # seconds since the epoch


def version_key(text: str) -> str:
    """A version as the pages key it (normalized PEP 440); anything else is a usage error."""
    try:
        return str(Version(text))
    except InvalidVersion:
        msg = f"{text!r} is not a valid version (PEP 440)"
        raise UsageError(msg) from None


def check_reason(reason: str) -> str:
    """One printable line: it goes into an HTML attribute and a JSON string verbatim."""
    if len(reason) > MAX_REASON:
        msg = f"the reason is longer than {MAX_REASON} characters"
        raise UsageError(msg)
    if any(not char.isprintable() for char in reason):
        msg = "the reason must be one line of printable characters"
        raise UsageError(msg)
    return reason


class YankState:
    """`yanked.json` of one state directory: read when its stat changes, written under a lock."""

    def __init__(self, state_dir: Path) -> None:
        layout = StateLayout(state_dir)
        self.path = layout.yanks
        self._lock = layout.yanks_lock
        self._stamp: tuple[int, int, int] | None = None
        self._yanks: dict[NormalizedName, dict[str, Yank]] = {}

    def changed(self) -> bool:
        """Whether the file differs from what was read last (it is read again by `yanks`)."""
        return self._current_stamp() != self._stamp

    def yanks(self) -> dict[NormalizedName, dict[str, Yank]]:
        stamp = self._current_stamp()
        if stamp != self._stamp:
            self._yanks, self._stamp = self._read(), stamp
        return self._yanks

    def reasons(self) -> Reasons:
        return {name: {v: y.reason for v, y in versions.items()} for name, versions in self.yanks().items()}

    def yank(self, project: str, version: str, reason: str, by: str) -> bool:
        """Yank (or change the reason); False when it was yanked with that reason already."""
        name, key = canonicalize_name(project), version_key(version)
        entry = Yank(check_reason(reason), by, time.time())
        with exclusive_lock(self._lock):
            data = self._read()
            old = data.get(name, {}).get(key)
            if old is not None and old.reason == entry.reason:
                return False
            data.setdefault(name, {})[key] = entry
            self._write(data)
        log.info("yanked %s %s (%s), by %s", name, key, reason or "no reason given", by,
                 extra={"PROJECT": name, "VERSION": key, "USER": by})
        return True

    def unyank(self, project: str, version: str, by: str) -> bool:
        """Un-yank; False when this file did not yank that version."""
        name, key = canonicalize_name(project), version_key(version)
        with exclusive_lock(self._lock):
            data = self._read()
            if data.get(name, {}).pop(key, None) is None:
                return False
            if not data[name]:
                del data[name]
            self._write(data)
        log.info("un-yanked %s %s, by %s", name, key, by, extra={"PROJECT": name, "VERSION": key, "USER": by})
        return True

    def _current_stamp(self) -> tuple[int, int, int] | None:
        try:
            stat = os.stat(self.path)  # noqa: PTH116 - the generator calls this at every batch
        except FileNotFoundError:
            return None
        return (stat.st_ino, stat.st_size, stat.st_mtime_ns)

    def _read(self) -> dict[NormalizedName, dict[str, Yank]]:
        try:
            raw: Any = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            log.error("%s is unreadable (%s): no yanks from it apply", self.path, error,
                      extra={"FILE": str(self.path)})
            return {}
        return _parse(raw, self.path)

    def _write(self, data: Mapping[NormalizedName, Mapping[str, Yank]]) -> None:
        document = {name: {v: {"reason": y.reason, "by": y.by, "at": round(y.at, 3)}
                           for v, y in sorted(versions.items())}
                    for name, versions in sorted(data.items()) if versions}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, (json.dumps(document, indent=1) + "\n").encode())


def _parse(raw: object, path: Path) -> dict[NormalizedName, dict[str, Yank]]:
    """What the file holds; an entry of the wrong shape is skipped with a warning, not fatal."""
    out: dict[NormalizedName, dict[str, Yank]] = {}
    for project, versions in (raw.items() if isinstance(raw, dict) else []):
        for version, entry in (versions.items() if isinstance(versions, dict) else []):
            if not isinstance(entry, dict) or not isinstance(entry.get("reason"), str):
                log.warning("%s: %s %s: not a yank entry; ignored", path, project, version,
                            extra={"FILE": str(path)})
                continue
            at = entry.get("at")
            out.setdefault(canonicalize_name(str(project)), {})[normalize_version_key(str(version))] = Yank(
                entry["reason"], str(entry.get("by", "")), float(at) if isinstance(at, int | float) else 0.0)
    return out
