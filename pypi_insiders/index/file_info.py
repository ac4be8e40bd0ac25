"""What the index needs to know about one distribution file, read from the file itself.

A file is served only if its name parses, its archive is whole and its own metadata agrees
with its name: an index that serves a file pip then rejects (or worse, installs as another
project) is broken in a way users cannot see. This is the only place the generator reads a
distribution's bytes, and it reads them once per change thanks to the cache.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import NormalizedName

from pypi_insiders.errors import InvalidDistributionError
from pypi_insiders.metadata import read_core_metadata
from pypi_insiders.project_names import is_normalized
from pypi_insiders.store import parse_filename

_CHUNK = 256 * 1024
_HEAD = 1024 * 1024  # bytes kept to read metadata from: a small wheel, or an sdist's start


@dataclass(frozen=True, kw_only=True)
class FileInfo:
    project: NormalizedName
    version: str
    kind: str
    sha256: str
    requires_python: str | None
    metadata: bytes | None  # the core metadata a PEP 658 file serves; wheels only
    size: int
    mtime_ns: int
    metadata_sha256: str | None = None  # set instead of `metadata` by a reader that wrote it out


def inspect(path: Path, filename: str) -> FileInfo:
    """Everything served about one file; raises InvalidDistributionError if it must not be served."""
    parsed = parse_filename(filename)
    # packaging 23.0 does not check sdist names; pages and paths rely on it.
    if not is_normalized(parsed.project):
        msg = f"{filename}: not a valid project name (PEP 508)"
        raise InvalidDistributionError(msg)
    sha256, size, mtime_ns, head = _digest(path, filename)
    core = read_core_metadata(path, filename, head=head)
    if core.name != parsed.project:
        msg = f"{filename}: its metadata names project {core.name!r}, its filename {parsed.project!r}"
        raise InvalidDistributionError(
            msg)
    if core.version != parsed.version:
        msg = f"{filename}: its metadata says version {core.version}, its filename {parsed.version}"
        raise InvalidDistributionError(
            msg)
    return FileInfo(project=parsed.project, version=str(parsed.version), kind=parsed.kind,
                    sha256=sha256, requires_python=core.requires_python,
                    metadata=core.raw if parsed.kind == "wheel" else None,
                    size=size, mtime_ns=mtime_ns)


def _digest(path: Path, filename: str) -> tuple[str, int, int, bytes | None]:
    """sha256 of the file and its stat; a .tar.gz is also checked to the last byte.

    A truncated tarball can still yield its PKG-INFO (it comes first), so only decompressing
    the whole stream proves it is complete; zip archives prove it with their central directory.
    What is read is kept for the metadata to be read from, up to `_HEAD` bytes: the first of a
    .tar.gz's decompressed stream, or a whole wheel that small (most are).
    """
    digest = hashlib.sha256()
    gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS) if filename.endswith(".tar.gz") else None
    wheel = filename.endswith(".whl")
    head = bytearray()
    try:
        # Unbuffered, stat first, and no read past the size it gives: a small file is one
        # read() call. A file that changes meanwhile keeps the stat from before the change,
        # which the next scan sees differ, so it is read again (store files are renamed in
        # whole anyway).
        with open(path, "rb", buffering=0) as stream:  # noqa: PTH123 - the cheaper call, 200,000 times
            stat = os.fstat(stream.fileno())
            left = stat.st_size
            while left > 0 and (chunk := stream.read(min(_CHUNK, left))):
                left -= len(chunk)
                digest.update(chunk)
                if gunzip is not None:
                    _drain(gunzip, chunk, head)
                elif wheel and len(head) <= _HEAD:
                    head += chunk
    except zlib.error as error:
        msg = f"{filename}: broken gzip stream: {error}"
        raise InvalidDistributionError(msg) from None
    except OSError as error:
        msg = f"{filename}: cannot read: {error.strerror}"
        raise InvalidDistributionError(msg) from None
    if gunzip is not None and not gunzip.eof:
        msg = f"{filename}: truncated gzip stream"
        raise InvalidDistributionError(msg)
    kept = gunzip is not None or (wheel and len(head) <= _HEAD)
    return digest.hexdigest(), stat.st_size, stat.st_mtime_ns, bytes(head) if kept else None


def _drain(gunzip: zlib._Decompress, data: bytes, head: bytearray) -> None:
    """Decompress, keeping only the head, in bounded pieces so a gzip bomb costs time, not memory."""
    while data and not gunzip.eof:
        out = gunzip.decompress(data, 4 * _CHUNK)
        if len(head) < _HEAD:
            head += out[:_HEAD - len(head)]
        data = gunzip.unconsumed_tail
