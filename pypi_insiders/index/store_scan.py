"""A fast listing of the store for the generator: one fingerprint per directory.

`Store.walk` builds a Path per file; at 200,000 files that alone costs seconds. A rescan only
needs to know which directories changed, so this walks with plain strings and reduces each
directory to a digest of its (name, size, mtime_ns) entries. Same visibility rules as
`Store.walk`: hidden and temporary names are skipped, symlinked directories are not followed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Iterator

from pypi_insiders.store import is_hidden

log = logging.getLogger(__name__)

Entry = tuple[str, int, int]  # (file name, size, mtime_ns)


def join(directory: str, name: str) -> str:
    return f"{directory}/{name}" if directory else name


def _scan(root: str, directory: str) -> tuple[list[Entry], list[str]] | None:
    """Visible files (with stat) and subdirectory names of one directory; None if it is gone."""
    files: list[Entry] = []
    subdirectories: list[str] = []
    try:
        with os.scandir(join(root, directory) if directory else root) as entries:
            for entry in entries:  # the hot loop of every rescan: keep it flat
                name = entry.name
                if is_hidden(name):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    subdirectories.append(name)
                    continue
                try:
                    if entry.is_file():
                        stat = entry.stat()
                        files.append((name, stat.st_size, stat.st_mtime_ns))
                except FileNotFoundError:  # removed while we looked
                    continue
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        log.warning("cannot list %s: %s", join(root, directory), error.strerror,
                    extra={"FILE": join(root, directory)})
    return files, subdirectories


def list_files(root: str, directory: str) -> list[Entry]:
    found = _scan(root, directory)
    return [] if found is None else found[0]


def fingerprint(files: list[Entry]) -> bytes:
    """Changes whenever a file is added, removed, renamed, resized or touched."""
    lines = sorted(f"{name}\0{size}\0{mtime_ns}" for name, size, mtime_ns in files)
    return hashlib.blake2b("\n".join(lines).encode("utf-8", "surrogateescape"), digest_size=16).digest()


def walk_fingerprints(root: str, top: str = "") -> Iterator[tuple[str, bytes]]:
    """(store-relative directory, fingerprint) for `top` and every directory below it, if any."""
    stack = [top]
    while stack:
        directory = stack.pop()
        found = _scan(root, directory)
        if found is None:
            continue
        files, subdirectories = found
        stack.extend(join(directory, name) for name in subdirectories)
        yield directory, fingerprint(files)


def reachable(root: str, directory: str) -> bool:
    """Whether `walk_fingerprints` would list `directory` now: each part a visible directory,
    not a symlink."""
    path = root
    for part in directory.split("/"):
        if is_hidden(part):
            return False
        path = join(path, part)
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            return False
        if not stat.S_ISDIR(mode):
            return False
    return True
