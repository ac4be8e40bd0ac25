"""Atomic writes and file locks: the one place that knows how either is done.

Every file a reader may see while it changes (pages, state, the users file, drop-ins) is
replaced whole: a temp file in the same directory, optionally fsynced, then `os.replace`.
Locks are flocks, which the kernel drops when the holder dies, so a killed process never
leaves a lock behind for the next one to trip over.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_TEMP_ATTEMPTS = 100
_SPREAD = 2654435761  # Knuth's multiplicative hash: neighbouring pids start far apart


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
    tmp_name = _write_temp(path, data, mode, durable=durable, group=group)
    try:
        os.replace(tmp_name, path)  # noqa: PTH105 - the temp path is a str
    except BaseException:
        _discard(tmp_name)
        raise


_temp_numbers = itertools.count()  # next() on it is atomic: threads never share a number


def _write_temp(path: Path, data: bytes, mode: int, *, durable: bool,
                group: int | None = None) -> str:
    """A temp file beside `path` holding all of `data` with `mode` (and `group`), closed.

    Returns its name for the caller to give the final name to; on any failure the temp file
    is gone again, so neither caller can leave one behind.
    """
    fd, tmp_name = _create_temp(path)
    try:
        try:
            os.fchmod(fd, mode)
            if group is not None:
                os.fchown(fd, -1, group)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        _discard(tmp_name)
        raise
    return tmp_name


def _discard(tmp_name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp_name)  # noqa: PTH108 - the path is a str here


def _create_temp(path: Path) -> tuple[int, str]:
    """A new hidden temp file beside `path`: `.NAME.` plus 8 hex digits plus `.tmp`.

    A cold start writes hundreds of thousands of files; `tempfile.mkstemp` spent half of each
    write's time making its random name. The digits here mix the pid with a counter, so
    processes (forked ones too) rarely meet, and O_EXCL makes a meeting (or a dead process's
    leftover) cost only a retry. The name is as long as mkstemp's: the upload limit on
    filenames leaves room for exactly that.
    """
    prefix = f"{path.parent}/.{path.name}."
    for _attempt in range(_TEMP_ATTEMPTS):
        number = (os.getpid() * _SPREAD + next(_temp_numbers)) & 0xFFFFFFFF
        name = f"{prefix}{number:08x}.tmp"
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), name
        except FileExistsError:
            continue
    msg = f"{path.parent}: no free temp file name after {_TEMP_ATTEMPTS} tries"
    raise FileExistsError(msg)


def create_exclusive(path: Path, data: bytes, mode: int = 0o644, *, durable: bool = True) -> bool:
    """Create `path` whole with `data` unless it exists: True when this call made it.

    The bytes go to a temp file first (`.NAME.*.tmp`, which no `*.queued`-style glob matches),
    then a hard link gives them the final name, which fails when the name is taken: nobody ever
    sees the file empty or half written, and two creators cannot both win.
    """
    tmp_name = _write_temp(path, data, mode, durable=durable)
    try:
        try:
            os.link(tmp_name, path)
        except FileExistsError:
            return False
        if durable:
            fsync_directory(path.parent)
        return True
    finally:
        _discard(tmp_name)


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
