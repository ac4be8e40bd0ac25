"""The mirror's counters for `/status`, shared by every worker process and kept across restarts.

Requests land on any of `[server] processes`, so counters in one process's memory would show
a random share. They live in one small file under the mirror (`mirror/stats`), mapped into
memory; an update takes the file's flock for a few microseconds. Losing the file loses only
counts.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final, NamedTuple

_COUNTERS: Final = ("hits", "misses", "bytes_upstream", "stale_pages")
_HEAD: Final = struct.Struct("<4qdH")  # the counters, the last error's time, its length
_ERROR_MAX: Final = 512
_SIZE: Final = _HEAD.size + _ERROR_MAX


class MirrorStats:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        if os.fstat(self._fd).st_size < _SIZE:
            os.ftruncate(self._fd, _SIZE)
        self._map = mmap.mmap(self._fd, _SIZE)
        # The flock is on this process's one descriptor, which its threads share: it excludes
        # other processes only, so threads take this lock first.
        self._threads = threading.Lock()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._threads:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _read(self) -> tuple[list[int], float, str]:
        *counts, at, length = _HEAD.unpack_from(self._map, 0)
        text = bytes(self._map[_HEAD.size:_HEAD.size + min(length, _ERROR_MAX)]).decode("utf-8", "replace")
        return list(counts), at, text

    def add(self, **counts: int) -> None:
        with self._locked():
            values, at, text = self._read()
            for key, value in counts.items():
                values[_COUNTERS.index(key)] += value
            self._write(values, at, text)

    def error(self, text: str) -> None:
        with self._locked():
            values, _at, _text = self._read()
            self._write(values, time.time(), text)

    def _write(self, values: list[int], at: float, text: str) -> None:
        data = text.encode()[:_ERROR_MAX]
        _HEAD.pack_into(self._map, 0, *values, at, len(data))
        self._map[_HEAD.size:_HEAD.size + len(data)] = data


class Counts(NamedTuple):
    """The counters at one moment, for `/status` (all zero before the first request)."""

    hits: int = 0
    misses: int = 0
    bytes_upstream: int = 0
    stale_pages: int = 0
    last_error: str | None = None
    last_error_at: float | None = None  # seconds since the epoch


def read_counts(path: Path) -> Counts:
    """The counters as another process sees them, read-only: `status` run by a member of the
    service's group may read the file, not lock it for writing. No file yet: all zero."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return Counts()
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # writers take it exclusively: no half-written update
        data = os.pread(fd, _SIZE, 0)
    finally:
        os.close(fd)  # closing drops the flock
    if len(data) < _SIZE:
        return Counts()
    hits, misses, upstream, stale, at, length = _HEAD.unpack_from(data, 0)
    text = data[_HEAD.size:_HEAD.size + min(length, _ERROR_MAX)].decode("utf-8", "replace")
    return Counts(hits, misses, upstream, stale, text or None, at or None)
