"""The pinned names: every project name this index ever served, kept local for good.

This file is the dependency-confusion guard's memory. The generator adds to it; the web's
fallback reads it, so a name whose last file was deleted answers 404 instead of falling
through to a public project of the same name. The list only grows.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

from packaging.utils import NormalizedName, canonicalize_name

from pypi_insiders.errors import InvalidDistributionError
from pypi_insiders.files import atomic_write
from pypi_insiders.store import is_hidden, parse_filename


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


def is_local(name: NormalizedName, pins: Pins, roots: Iterable[str]) -> bool:
    """The dependency-confusion rule, in one place: pinned, or on its way (files in the store,
    or a page half written, under one of `roots`). Such a name never goes upstream."""
    return name in pins or any(os.path.isdir(os.path.join(root, name)) for root in roots)  # noqa: PTH112,PTH118


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


def names_in_store(root: Path) -> set[NormalizedName]:
    """Every project the store holds, from names alone (no stat, no archive read): fast enough to
    pin them all before a fresh instance serves anything (about a second for 200,000 files).

    A file in a directory named after its project counts by the directory's name, any other by
    its own name (the one case that costs a filename parse); a directory holding none of its
    namesake's files pins nothing (it is local only while it exists, as `fallback` sees it).
    """
    found: set[NormalizedName] = set()
    stack: list[tuple[str, NormalizedName | None]] = [(str(root), None)]
    while stack:
        directory, project = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue  # the generation logs what it cannot read
        spellings: set[str] = set()  # this directory's spellings of its project's name, seen so far
        for entry in entries:
            if is_hidden(entry.name):
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append((entry.path, canonicalize_name(entry.name) if project is None else project))
            elif project is not None and _names_project(entry.name, project, spellings):
                found.add(project)
            else:
                with contextlib.suppress(InvalidDistributionError):
                    found.add(parse_filename(entry.name).project)
    return found


def _names_project(filename: str, project: NormalizedName, spellings: set[str]) -> bool:
    """Whether a filename is the project's name (any spelling), a dash and a version's digit."""
    size = len(project)
    if len(filename) < size + 2 or filename[size] != "-" or not filename[size + 1].isdigit():
        return False
    spelling = filename[:size]
    if spelling in spellings:
        return True
    if canonicalize_name(spelling) != project:
        return False
    spellings.add(spelling)
    return True
