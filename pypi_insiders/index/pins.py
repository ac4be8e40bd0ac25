"""The pinned names: every project name this index ever served, kept local for good.

This file is the dependency-confusion guard's memory. The generator adds to it; the web's
fallback reads it, so a name whose last file was deleted answers 404 instead of falling
through to a public project of the same name. The list only grows.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from packaging.utils import NormalizedName, canonicalize_name

from pypi_insiders.files import atomic_write

PINNED_FILE = "pinned-projects.txt"


def pins_path(state_dir: Path) -> Path:
    return state_dir / PINNED_FILE


def read_pins(path: Path) -> set[NormalizedName]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return set()
    return {canonicalize_name(line) for line in text.split()}


def write_pins(path: Path, names: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # No fsync: a name is pinned again from its files at every full run, and the files are
    # durable (Store.add syncs them), so a power cut cannot lose a pin that still matters.
    atomic_write(path, "".join(f"{name}\n" for name in sorted(set(names))).encode(), durable=False)


class Pins:
    """The names the generator pinned to local, re-read whenever the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None
        self._names: frozenset[NormalizedName] = frozenset()

    def __contains__(self, name: object) -> bool:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return False
        if (stat.st_mtime_ns, stat.st_size) != self._seen:
            self._names = frozenset(read_pins(self.path))
            self._seen = (stat.st_mtime_ns, stat.st_size)
        return name in self._names


class Pinner:
    """The generator's side: pin every name it served; the list only grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pinned = read_pins(path)

    def pin(self, served: Iterable[str]) -> int:
        """Pin the names not pinned yet; returns how many were new."""
        new = {canonicalize_name(name) for name in served} - self._pinned
        if new:
            self._pinned |= new | read_pins(self.path)  # another process (`generate`) may have added some
            write_pins(self.path, self._pinned)
        return len(new)
