"""The store: the distribution files on disk, the one source of truth everything else derives from.

Files may sit anywhere below the root (an administrator can drop them in by hand); what we add
goes to `<root>/<project>/<filename>`. Names come only from `packaging.utils`, never from
regexes, and a file is published by an atomic no-overwrite link, so a client never sees a
partial file and a published file is never replaced.

This module owns publishing for every writer (the fetcher, uploads, `remove`): what the store
holds (`contains`, `files_of`, `distributions_of`, `versions`, `copies`), where a file goes and
how it gets there (`add`), and the record of every filename ever published (`FilenameRegistry`,
kept in the state directory): like the public index, a filename once used is never accepted
again, not even after its file was deleted. Writers open the store with `Store.for_config`,
which brings the registry; a bare `Store(root)` reads and places files but records nothing.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from pypi_insiders.errors import FilenameReusedError, InvalidDistributionError, StoreError
from pypi_insiders.filename_registry import FilenameRegistry
from pypi_insiders.files import fsync_directory
from pypi_insiders.state_layout import StateLayout

if TYPE_CHECKING:
    from pypi_insiders.config import Config

log = logging.getLogger(__name__)

Kind = Literal["wheel", "sdist"]
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ParsedFilename:
    project: NormalizedName
    version: Version
    kind: Kind


@dataclass(frozen=True, kw_only=True)
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
    def __init__(self, root: Path, registry: Path | None = None) -> None:
        """`registry`: the file of published filenames; None records nothing (readers, tests)."""
        self.root = root
        self.registry = FilenameRegistry(registry, self._filenames) if registry is not None else None

    @classmethod
    def for_config(cls, config: Config) -> Store:
        """The store as every writer opens it: with the registry in the state directory."""
        return cls(config.paths.store, StateLayout(config.paths.state).published_filenames)

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
                    yield StoreEntry(relpath=relpath, size=stat.st_size, mtime_ns=stat.st_mtime_ns)

    def _filenames(self) -> Iterator[str]:
        return (entry.relpath.rpartition("/")[2] for entry in self.walk())

    # ------------------------------------------------------------------ what the store holds

    def target(self, filename: str, project: NormalizedName | None = None) -> Path:
        """Where `add` puts a file: `<root>/<project>/<filename>`, the project from the name by default."""
        parsed = parse_filename(filename)  # a name that is no distribution never gets a place
        return self.root / (project or parsed.project) / filename

    def contains(self, filename: str, *, project: NormalizedName | None = None) -> bool:
        """Whether a file of that name exists where `add` would put it."""
        try:
            return self.target(filename, project).exists()
        except InvalidDistributionError:
            return False

    def files_of(self, project: NormalizedName) -> list[str]:
        """The visible files in the project's directory, including ones not indexed yet."""
        try:
            with os.scandir(self.root / project) as entries:
                return [e.name for e in entries if not is_hidden(e.name) and e.is_file()]
        except OSError:
            return []

    def distributions_of(self, project: NormalizedName) -> dict[str, ParsedFilename]:
        """The files in the project's directory that are distributions of that project, by name.

        Anything else there (a README, another project's file dropped in by hand) is no
        release of the project: neither its versions nor its ownership count it.
        """
        found: dict[str, ParsedFilename] = {}
        for name in self.files_of(project):
            try:
                parsed = parse_filename(name)
            except InvalidDistributionError:
                continue
            if parsed.project == project:
                found[name] = parsed
        return found

    def versions(self, project: NormalizedName, kind: Kind) -> set[Version]:
        """Versions of the project with a file of that kind in its directory, whoever put it there."""
        return {p.version for p in self.distributions_of(project).values() if p.kind == kind}

    def copies(self, filename: str) -> list[Path]:
        """Every file of that name anywhere below the root (dropped in by hand, or where `add` put it)."""
        return [self.path_of(e.relpath) for e in self.walk() if e.relpath.rpartition("/")[2] == filename]

    def was_published(self, filename: str) -> bool:
        """Whether the name was ever published here (always False without a registry)."""
        return self.registry is not None and filename in self.registry

    # ------------------------------------------------------------------ publishing

    def remember(self, filenames: Iterable[str]) -> None:
        """Record names as published (files another reader saw, such as the index's listing)."""
        if self.registry is not None:
            self.registry.add(filenames)

    def add(self, filename: str, source: BinaryIO | Path, *, project: NormalizedName | None = None) -> Path:
        """Publish one file under `<project>/<filename>`; identical bytes already there are fine.

        Returns the published path. Raises FilenameReusedError when the name was published before
        and its file is gone, StoreError when the name is taken by other bytes. The name is
        recorded before the file appears, so no reader sees a file the registry does not hold.
        """
        final = self.target(filename, project)
        if self.registry is not None:
            if filename in self.registry and not final.exists():
                msg = f"{filename}: this filename was used before and cannot be reused"
                raise FilenameReusedError(msg)
            self.registry.add([filename])
        final.parent.mkdir(parents=True, exist_ok=True)
        self._place(final, source)
        return final

    def _place(self, final: Path, source: BinaryIO | Path) -> None:
        """Write a hidden temp file beside `final`, fsync it, and link it into place."""
        directory, filename = final.parent, final.name
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

    def remove(self, filename: str) -> list[Path]:
        """Delete every copy of a file, its name recorded first so it never comes back.

        Returns the removed paths (none: nothing of that name was here, nothing recorded).
        Raises StoreError naming the file that cannot be removed.
        """
        copies = self.copies(filename)
        if copies:
            self.remember([filename])
        for path in copies:
            try:
                path.unlink()
            except OSError as error:
                msg = f"{path}: cannot remove it: {error.strerror}"
                raise StoreError(msg) from None
        return copies


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
