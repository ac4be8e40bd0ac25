"""Atomic writes and file locks: the one place that knows how either is done.

Every file a reader may see while it changes (pages, state, the users file, drop-ins) is
replaced whole: a temp file in the same directory, optionally fsynced, then `os.replace`.
Locks are flocks, which the kernel drops when the holder dies, so a killed process never
leaves a lock behind for the next one to trip over.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class LockBusy(Exception):  # noqa: N818 - a condition, not a failure: callers say what holds it
    """The lock is held by another process and the caller asked not to wait."""


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o644, *, durable: bool = True,
                 group: int | None = None) -> None:
    """Replace `path` with `data` so that readers see the old file or the new one, never half.

    `durable=False` skips the fsync: right for derived files that a restart regenerates anyway.
    `group` gives the new file that group (the service reads the users file through it).
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)
            if group is not None:
                os.fchown(out.fileno(), -1, group)
            out.write(data)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        Path(tmp_name).replace(path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def write_derived(path: Path, data: bytes) -> None:
    """An atomic, non-durable write of a file the index derives, making its directory on the
    first miss: one failed create per new directory, and no mkdir per file once it exists
    (a cold start writes hundreds of thousands of them; a deleted index is made again)."""
    try:
        atomic_write(path, data, durable=False)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data, durable=False)


@contextmanager
def exclusive_lock(path: Path, *, wait: bool = True) -> Iterator[int]:
    """Hold an flock on `path` (a lock file, created if missing, or a directory) for the block.

    With `wait=False` a lock held elsewhere raises LockBusy at once instead of blocking.
    Yields the descriptor, so a holder may write its PID into a lock file.
    """
    fd = os.open(path, os.O_RDONLY) if path.is_dir() else os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockBusy(str(path)) from None
        yield fd
    finally:
        os.close(fd)  # releases the lock
