"""The directories an instance writes: made (or checked) before use, and held by one `serve`.

Parsing the config never touches the disk; the commands that write call `prepare` here. A
running `serve` holds an flock on `serve.lock` in each of its state, index and cache directories,
with its PID inside, so a second instance that would share any of them (and so serve the other's
pages and pin the other's names for good) refuses to start, naming the lock and the holder.
The kernel drops the lock with the process, so a killed instance never blocks the next one.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pypi_insiders import files
from pypi_insiders.config import Config
from pypi_insiders.errors import ConfigError

LOCK_NAME = "serve.lock"


def _directories(config: Config) -> tuple[tuple[str, Path], ...]:
    return (("paths.store", config.paths.store), ("paths.index", config.paths.index),
            ("paths.data", config.paths.state), ("paths.cache", config.paths.cache))


def prepare(config: Config, *, create: bool, write: bool = True) -> None:
    """Make sure the data directories exist (or can be made) and are writable where they must be.

    `write=False`: readable is enough (a member of the service's group checking the system's).
    """
    mode, able = (os.W_OK | os.X_OK, "writable") if write else (os.R_OK | os.X_OK, "readable")
    problems: list[str] = []
    for name, path in _directories(config):
        if create:
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                problems.append(f"{name}: cannot create {path}: {error.strerror}")
                continue
        if path.exists() and not path.is_dir():
            problems.append(f"{name}: {path} is not a directory")
        elif path.exists() and not os.access(path, mode):
            problems.append(f"{name}: {path} is not {able} by this user")
    if problems:
        raise ConfigError(problems)


class InstanceLock:
    """The flocks of one serving instance; `release` (or exit, or death) lets the next one in."""

    def __init__(self) -> None:
        self._held = contextlib.ExitStack()

    def acquire(self, config: Config) -> InstanceLock:
        seen: set[Path] = set()
        try:
            for _name, path in _directories(config)[1:]:  # the store is shared on purpose
                if path.resolve() not in seen:
                    seen.add(path.resolve())
                    _hold(self._held, path / LOCK_NAME)
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        self._held.close()


def _hold(stack: contextlib.ExitStack, lock: Path) -> None:
    try:
        fd = stack.enter_context(files.exclusive_lock(lock, wait=False))
    except files.LockBusy:
        holder = lock.read_text(errors="replace").strip() if lock.exists() else ""
        msg = (f"{lock}: held by another pypi-insiders serve (PID {holder or 'unknown'}) using the "
               "same state; give this one its own --store or [paths]")
        raise ConfigError(msg) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
