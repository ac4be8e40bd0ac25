"""Paths a request names, below the directories the app serves from, and the files they hold.

Every path is resolved inside its root and checked again after symlinks are followed, so no
request can read outside the data directories; hidden names (files not yet published) and
anything but a regular file (directories, devices) are not there as far as a request can tell.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from stat import S_ISREG
from typing import Final

# What a request can make of a path that names nothing: a name too long for the file system,
# a symlink loop left in the store, a file where a directory was expected. All are a 404.
ABSENT: Final = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG, errno.ELOOP, errno.EISDIR})


def resolve_inside(root: str, relpath: str) -> str | None:
    """The real path of `relpath` below `root` (already real), or None when it would escape.

    Hidden names are refused too: they are temporary files that are not published yet.
    """
    parts = relpath.split("/")
    for part in parts:
        if not part or part[0] == "." or "\0" in part or "\\" in part:
            return None
    real = os.path.realpath(os.path.join(root, *parts))  # noqa: PTH118
    if not real.startswith(root + os.sep):
        return None
    return real


@dataclass(frozen=True)
class ServedFile:
    """What a distribution (or metadata) response needs before its bytes are read."""

    path: str
    size: int
    etag: str
    mtime: int


def served_file(path: str) -> ServedFile | None:
    """None for anything but a readable regular file, so directories and devices are 404s."""
    try:
        stat = os.stat(path)  # noqa: PTH116
    except PermissionError:
        return None
    except OSError as error:
        if error.errno not in ABSENT:
            raise
        return None
    if not S_ISREG(stat.st_mode):
        return None
    return ServedFile(path, stat.st_size, f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"', int(stat.st_mtime))
