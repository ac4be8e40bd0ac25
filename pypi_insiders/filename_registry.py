"""The record of every filename ever published: `<state>/published-filenames.txt`.

The store owns it (`Store.add` refuses a name it holds whose file is gone, and records each
name before the file appears); this module only knows the file. Warehouse keeps the same
promise with a table of used filenames: a name that served some bytes once never serves
others, so a pinned hash or a cached download can never be contradicted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path


class FilenameRegistry:
    """Every filename ever published here; only grows. State, not cache: it cannot be rebuilt.

    Created on first use from `seed` (the store's current filenames), so files dropped in by
    hand count. Lines are appended with one O_APPEND write each and fsynced, so a concurrent reader (another
    serving process, the fetcher) sees whole lines only; each reader re-reads on a new mtime.
    """

    def __init__(self, path: Path, seed: Callable[[], Iterable[str]]) -> None:
        self.path = path
        self.seed = seed
        self._names: set[str] | None = None
        self._stamp: int | None = None

    def __contains__(self, filename: str) -> bool:
        return filename in self._load()

    def add(self, filenames: Iterable[str]) -> None:
        names = self._load()
        new = [name for name in dict.fromkeys(filenames) if name not in names]
        if new:
            self._append(new)
            names.update(new)

    def _append(self, filenames: list[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, "".join(f"{name}\n" for name in filenames).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        self._stamp = self.path.stat().st_mtime_ns

    def _load(self) -> set[str]:
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._names = set(self.seed())
            self._append(sorted(self._names))
            return self._names
        if self._names is None or stamp != self._stamp:
            text = self.path.read_text(encoding="utf-8")
            self._names, self._stamp = {line for line in text.splitlines() if line}, stamp
        return self._names
