"""Where a fetched file came from: `<state>/provenance.jsonl`, written by the fetcher at publish,
read by the web's project pages.

One JSON line per published file: its filename, the repository (key and URL, without any
credentials), the tag and the commit it was built from, and when. Lines are appended with one
O_APPEND write each and fsynced, so a concurrent reader sees whole lines only; the last line
for a filename wins. State, not cache: it cannot be rebuilt from the store.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from pypi_insiders.state_layout import StateLayout

log = logging.getLogger(__name__)

@dataclass(frozen=True, kw_only=True)
class Origin:
    repo: str  # the key in the configuration
    url: str  # shown without credentials
    tag: str
    commit: str
    built_at: float = 0.0  # seconds since the epoch


def record(state_dir: Path, filenames: list[str], origin: Origin) -> None:
    """Append one line per file; a failure is logged, never fatal (the files are published)."""
    stamped = origin if origin.built_at else Origin(**{**asdict(origin), "built_at": time.time()})
    lines = "".join(json.dumps({"filename": name, **asdict(stamped)}, sort_keys=True) + "\n"
                    for name in filenames)
    path = StateLayout(state_dir).provenance
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, lines.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as error:
        log.warning("cannot record where %s came from in %s: %s", ", ".join(filenames), path,
                    error.strerror, extra={"FILE": str(path)})


class Provenance:
    """The provenance file, read again whenever it changes."""

    def __init__(self, state_dir: Path) -> None:
        self.path = StateLayout(state_dir).provenance
        self._stamp: tuple[int, int] | None = None
        self._origins: dict[str, Origin] = {}

    def of(self, filename: str) -> Origin | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        if (stat.st_ino, stat.st_size) != self._stamp:
            self._origins, self._stamp = self._read(), (stat.st_ino, stat.st_size)
        return self._origins.get(filename)

    def _read(self) -> dict[str, Origin]:
        origins: dict[str, Origin] = {}
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return origins
        for line in text.splitlines():
            try:
                entry = json.loads(line)
                origins[str(entry["filename"])] = Origin(
                    repo=str(entry["repo"]), url=str(entry["url"]), tag=str(entry["tag"]),
                    commit=str(entry["commit"]), built_at=float(entry.get("built_at", 0.0)))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a crash, or a stranger's: skip it
        return origins
