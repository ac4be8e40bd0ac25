"""The store: the distribution files on disk, the one source of truth everything else derives from.

Files may sit anywhere below the root (an administrator can drop them in by hand); what we add
goes to `<root>/<project>/<filename>`. Names come only from `packaging.utils`, never from
regexes, and a file is published by an atomic no-overwrite link, so a client never sees a
partial file and a published file is never replaced.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from pypi_insiders.errors import InvalidDistributionError, StoreError
from pypi_insiders.files import fsync_directory

log = logging.getLogger(__name__)

Kind = Literal["wheel", "sdist"]
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ParsedFilename:
    project: NormalizedName
    version: Version
    kind: Kind


@dataclass(frozen=True)
class StoreEntry:
    """A file below the root as the directory walk saw it; cheap, nothing parsed yet."""

    relpath: str  # POSIX separators, relative to the store root
    size: int
    mtime_ns: int


def is_hidden(name: str) -> bool:
    """Temporary files (ours, editors', rsync's) start with a dot and are never distributions."""
    return name.startswith(".") or name.endswith((".part", ".tmp", "~"))


def parse_filename(filename: str) -> ParsedFilename:
    """Project, version and kind of a distribution filename; the only place filenames are parsed."""
    if "/" in filename or "\\" in filename or filename in ("", ".", "..") or "\0" in filename:
        msg = f"{filename!r}: not a plain file name"
        raise InvalidDistributionError(msg)
    try:
        if filename.endswith(".whl"):
            name, version, _build, _tags = parse_wheel_filename(filename)
            return ParsedFilename(name, version, "wheel")
        if filename.endswith((".tar.gz", ".zip")):
            name, version = parse_sdist_filename(filename)
            return ParsedFilename(name, version, "sdist")
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion) as error:  # 23.0 lets sdists' through
        msg = f"{filename}: {error}"
        raise InvalidDistributionError(msg) from None
    msg = f"{filename}: not a wheel (.whl) or sdist (.tar.gz, .zip)"
    raise InvalidDistributionError(msg)


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, relpath: str) -> Path:
        """The file for a store-relative path; refuses anything that would leave the root."""
        parts = relpath.split("/")
        if not relpath or relpath.startswith("/") or any(p in ("", ".", "..") for p in parts):
            msg = f"{relpath!r}: not a path inside the store"
            raise StoreError(msg)
        return self.root.joinpath(*parts)

    def relpath_of(self, path: Path) -> str | None:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return None

    def walk(self) -> Iterator[StoreEntry]:
        """Every visible regular file below the root, with the stat we already paid for."""
        stack = [self.root]
        while stack:
            directory = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except FileNotFoundError:
                continue
            except OSError as error:
                log.warning("cannot list %s: %s", directory, error.strerror, extra={"FILE": str(directory)})
                continue
            for entry in entries:
                if is_hidden(entry.name):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file():
                    stat = entry.stat()
                    relpath = Path(entry.path).relative_to(self.root).as_posix()
                    yield StoreEntry(relpath, stat.st_size, stat.st_mtime_ns)

    def add(self, filename: str, source: BinaryIO | Path, *, project: NormalizedName | None = None) -> Path:
        """Publish one file under `<project>/<filename>`; identical bytes already there are fine.

        Returns the published path. Raises StoreError when the name is taken by other bytes.
        """
        parsed = parse_filename(filename)
        directory = self.root / (project or parsed.project)
        directory.mkdir(parents=True, exist_ok=True)
        final = directory / filename
        fd, tmp_name = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=directory)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                if isinstance(source, Path):
                    with source.open("rb") as stream:
                        shutil.copyfileobj(stream, out, _CHUNK)
                else:
                    shutil.copyfileobj(source, out, _CHUNK)
                out.flush()
                os.fsync(out.fileno())
            tmp.chmod(0o644)
            try:
                os.link(tmp, final)  # atomic, and unlike rename it never replaces an existing file
            except FileExistsError:
                if not same_content(tmp, final):
                    msg = f"{final}: already exists with different content"
                    raise StoreError(msg) from None
                log.info("%s: already in the store with identical content", filename,
                         extra={"FILE": str(final)})
            else:
                fsync_directory(directory)
        finally:
            tmp.unlink(missing_ok=True)
        return final

    def contains(self, filename: str) -> bool:
        """Whether a file of that name exists where `add` would put it."""
        try:
            parsed = parse_filename(filename)
        except InvalidDistributionError:
            return False
        return (self.root / parsed.project / filename).exists()


def same_content(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            chunk_a, chunk_b = fa.read(_CHUNK), fb.read(_CHUNK)
            if chunk_a != chunk_b:
                return False
            if not chunk_a:
                return True
