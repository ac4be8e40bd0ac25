"""Keeping the mirror's disk in bounds: LRU eviction past `max_size`, purge, verify.

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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pypi_insiders.config import UpstreamConfig
from pypi_insiders.files import LockBusy, exclusive_lock
from pypi_insiders.mirror.layout import METADATA, MirrorLayout, is_sha256
from pypi_insiders.mirror.page import BadPageError, from_bytes

log = logging.getLogger(__name__)

_LOW_WATER: Final = 0.9


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

    def evict_if_over(self) -> int:
        """Run after a file is stored: one process sweeps at a time, the others skip."""
        if not self.settings.max_size:
            return 0
        try:
            with exclusive_lock(self.layout.locks / "sweep.lock", wait=False):
                return self.evict()
        except LockBusy:
            return 0

    def evict(self) -> int:
        """Bytes freed. Oldest first, until under 90 % of max_size."""
        cap = self.settings.max_size
        files = sorted(self.stored(), key=lambda f: f.mtime)
        total = sum(f.size for f in files)
        if not cap or total <= cap:
            return 0
        freed = 0
        for item in files:
            if total - freed <= cap * _LOW_WATER:
                break
            if self.layout.keep_mark(item.sha256).exists() or not self._remove(item.sha256):
                continue
            freed += item.size
            log.info("mirror evicted %s (%d bytes)", item.path.name, item.size,
                     extra={"FILE": item.path.name, "SHA256": item.sha256, "BYTES": str(item.size),
                            "RESULT": "evicted"})
        return freed

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

    def drop_unlisted(self) -> int:
        """Files no stored page lists any more (upstream deleted them, or the project was
        purged): never served again, so their bytes go. Prefetched files stay."""
        listed: set[str] = set()
        for page_file in self.layout.pages.glob("*.json"):
            try:
                listed.update(f.sha256 for f in from_bytes(page_file.read_bytes()).files)
            except (OSError, BadPageError):
                return 0  # a page we cannot read might list anything: delete nothing
        dropped = 0
        for item in list(self.stored()):
            if item.sha256 not in listed and not self.layout.keep_mark(item.sha256).exists() \
                    and self._remove(item.sha256):
                dropped += 1
                log.info("mirror dropped %s: no page lists it", item.path.name,
                         extra={"FILE": item.path.name, "SHA256": item.sha256, "RESULT": "removed"})
        return dropped

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


def _dirs(path: str) -> Iterator[os.DirEntry[str]]:
    try:
        yield from (e for e in os.scandir(path) if e.is_dir(follow_symlinks=False))
    except NotADirectoryError:
        return
