"""Keeping the mirror's disk in bounds: the sweep, LRU eviction past `max_size`, purge, verify.

A sweep (`Sweeper.sweep`, one function for the service's parent, which runs it every five
minutes and when a worker asks, and for `pypi-insiders mirror sweep`) evicts past `max_size`,
drops the files no stored page lists (unless `keep_removed`), removes dead `.part` files and
lock files unused for a day, and says what it freed in one journal line. A worker asks by
creating `mirror/sweep-wanted` (`ask_for_sweep`), which the parent polls: no request, HTTP or
other, can make it delete anything but what the sweep would delete anyway.

Eviction deletes the least recently used files (oldest mtime: a hit refreshes it, at most
hourly) until the total is under 90 % of the cap. It never deletes a prefetched file (a mark
in `kept/`) or one whose lock is held (being written). A file nginx is sending survives its
deletion: the open descriptor keeps the inode. Deletes come from the service or the CLI
only; no HTTP request can delete anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pypi_insiders.config import UpstreamConfig
from pypi_insiders.errors import InvalidDistributionError
from pypi_insiders.files import LockBusy, exclusive_lock
from pypi_insiders.mirror.layout import METADATA, MirrorLayout, is_sha256
from pypi_insiders.mirror.page import BadPageError, from_bytes
from pypi_insiders.store import parse_filename

log = logging.getLogger(__name__)

_LOW_WATER: Final = 0.9
_LOCK_AGE: Final = 86400.0  # seconds a lock file stays after its last creation
_SWEEP_LOCK: Final = "sweep.lock"


def ask_for_sweep(layout: MirrorLayout) -> None:
    """Ask the service's parent for a sweep soon (a file passed through unstored, a lower cap)."""
    with contextlib.suppress(OSError):
        layout.sweep_request.touch()


@dataclass
class Swept:
    """What one sweep removed."""

    evicted: int = 0
    evicted_bytes: int = 0
    unlisted: int = 0
    unlisted_bytes: int = 0
    parts: int = 0
    locks: int = 0

    @property
    def files(self) -> int:
        return self.evicted + self.unlisted

    @property
    def bytes(self) -> int:
        return self.evicted_bytes + self.unlisted_bytes

    def summary(self) -> str:
        return (f"{self.files} files, {self.bytes} bytes freed ({self.evicted} evicted past max_size, "
                f"{self.unlisted} no page lists any more); {self.parts} dead downloads and {self.locks} old "
                "lock files removed")


@dataclass(frozen=True)
class StoredFile:
    path: Path
    sha256: str
    size: int
    mtime: float


class Sweeper:
    def __init__(self, layout: MirrorLayout, settings: UpstreamConfig) -> None:
        self.layout, self.settings = layout, settings

    def stored(self) -> Iterator[StoredFile]:
        """Every kept distribution file (metadata files go with theirs)."""
        with contextlib.suppress(FileNotFoundError):
            for shard in os.scandir(self.layout.files):
                for entry in _dirs(shard.path):
                    if not is_sha256(entry.name):
                        continue
                    for item in os.scandir(entry.path):
                        if item.is_file(follow_symlinks=False) and not item.name.endswith(METADATA):
                            stat = item.stat(follow_symlinks=False)
                            yield StoredFile(Path(item.path), entry.name, stat.st_size, stat.st_mtime)

    def usage(self) -> tuple[int, int]:
        sizes = [f.size for f in self.stored()]
        return sum(sizes), len(sizes)

    def sweep(self) -> Swept:
        """The whole sweep, one process at a time (a second one waits, then finds little to do)."""
        swept = Swept()
        self.layout.locks.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.layout.locks / _SWEEP_LOCK):
            swept.parts = self.clean_tmp()
            if not self.settings.keep_removed:
                swept.unlisted, swept.unlisted_bytes = self.drop_unlisted()
            swept.evicted, swept.evicted_bytes = self.evict()
            swept.locks = self.clean_locks()
        _report(swept)
        return swept

    def evict_if_over(self) -> int:
        """Run after a file is stored: one process sweeps at a time, the others skip."""
        if not self.settings.max_size:
            return 0
        try:
            with exclusive_lock(self.layout.locks / _SWEEP_LOCK, wait=False):
                swept = Swept()
                swept.evicted, swept.evicted_bytes = self.evict()
        except LockBusy:
            return 0
        _report(swept)
        return swept.evicted_bytes

    def evict(self) -> tuple[int, int]:
        """(files, bytes) freed. Oldest first, until under 90 % of max_size."""
        cap = self.settings.max_size
        files = sorted(self.stored(), key=lambda f: f.mtime)
        total = sum(f.size for f in files)
        if not cap or total <= cap:
            return 0, 0
        count = freed = 0
        for item in files:
            if total - freed <= cap * _LOW_WATER:
                break
            if self.layout.keep_mark(item.sha256).exists() or not self._remove(item.sha256):
                continue
            count, freed = count + 1, freed + item.size
            log.debug("mirror evicted %s (%d bytes)", item.path.name, item.size,
                      extra={"FILE": item.path.name, "SHA256": item.sha256, "BYTES": str(item.size),
                             "RESULT": "evicted"})
        return count, freed

    def _remove(self, sha256: str) -> bool:
        """Delete one file's directory, unless it is being written right now."""
        try:
            with exclusive_lock(self.layout.lock(sha256), wait=False):
                shutil.rmtree(self.layout.file(sha256, "x").parent, ignore_errors=True)
        except LockBusy:
            return False
        return True

    def remove(self, sha256: str) -> bool:
        return self._remove(sha256)

    def drop_unlisted(self) -> tuple[int, int]:
        """(files, bytes) of files upstream deleted: their project's stored page lists them no
        more, or the page itself was dropped because upstream no longer has the project (or the
        name became local: `mirror/gone/`). Never served again, so their bytes go. A project
        without a page for another reason (a new upstream URL) keeps its files: the next page
        may list them again. Prefetched files stay."""
        listed: set[str] = set()
        paged: set[str] = set()
        for page_file in self.layout.pages.glob("*.json"):
            try:
                listed.update(f.sha256 for f in from_bytes(page_file.read_bytes()).files)
            except FileNotFoundError:
                continue  # dropped meanwhile: it lists nothing now
            except (OSError, BadPageError):
                return 0, 0  # a page we cannot read might list anything: delete nothing
            paged.add(page_file.stem)
        gone = {mark.name for mark in _entries(self.layout.gone)}
        count = freed = 0
        for item in list(self.stored()):
            if item.sha256 in listed or _project(item.path.name) not in paged | gone \
                    or self.layout.keep_mark(item.sha256).exists() or not self._remove(item.sha256):
                continue
            count, freed = count + 1, freed + item.size
            log.debug("mirror dropped %s: upstream no longer lists it", item.path.name,
                      extra={"FILE": item.path.name, "SHA256": item.sha256, "RESULT": "removed"})
        for name in gone:
            (self.layout.gone / name).unlink(missing_ok=True)
        return count, freed

    def verify(self) -> list[StoredFile]:
        """Re-hash every stored file against the hash its path names; delete and return the bad."""
        bad = []
        for item in self.stored():
            digest = hashlib.sha256()
            with item.path.open("rb") as stream:
                while chunk := stream.read(1024 * 1024):
                    digest.update(chunk)
            if digest.hexdigest() != item.sha256:
                log.error("mirror verify: %s has sha256 %s, expected %s; deleted", item.path,
                          digest.hexdigest(), item.sha256,
                          extra={"FILE": item.path.name, "SHA256": item.sha256, "RESULT": "mismatch"})
                self._remove(item.sha256)
                bad.append(item)
        return bad

    def clean_tmp(self) -> int:
        """`.part` files whose lock nobody holds: left by a dead leader, never served."""
        removed = 0
        with contextlib.suppress(FileNotFoundError):
            for part in self.layout.tmp.glob("*.part"):
                sha = part.name.removesuffix(".part")
                try:
                    with exclusive_lock(self.layout.lock(sha), wait=False):
                        part.unlink(missing_ok=True)
                        removed += 1
                except LockBusy:
                    continue
        return removed

    def clean_locks(self) -> int:
        """Lock files older than a day that nobody holds: one is left by every file ever
        fetched. A fetcher that opened one just before it went checks, once it holds the flock,
        that the path is still its file (`download._same_file`), so two never lead at once."""
        removed = 0
        cutoff = time.time() - _LOCK_AGE
        with contextlib.suppress(FileNotFoundError):
            for lock in self.layout.locks.glob("*.lock"):
                if lock.name == _SWEEP_LOCK:
                    continue
                try:
                    if lock.stat().st_mtime >= cutoff:
                        continue
                    with exclusive_lock(lock, wait=False):
                        lock.unlink()
                        removed += 1
                except (LockBusy, FileNotFoundError):
                    continue
        return removed


def _report(swept: Swept) -> None:
    """One journal line per sweep that freed anything."""
    if swept.files or swept.parts or swept.locks:
        log.info("mirror sweep: %s", swept.summary(),
                 extra={"RESULT": "swept", "FILES": str(swept.files), "BYTES": str(swept.bytes)})


def _project(filename: str) -> str | None:
    try:
        return parse_filename(filename).project
    except InvalidDistributionError:
        return None


def _entries(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except FileNotFoundError:
        return []


def _dirs(path: str) -> Iterator[os.DirEntry[str]]:
    try:
        yield from (e for e in os.scandir(path) if e.is_dir(follow_symlinks=False))
    except NotADirectoryError:
        return
