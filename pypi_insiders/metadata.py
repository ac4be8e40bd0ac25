"""Core metadata read out of a distribution archive, so that what we serve is what the file says.

The index takes `requires-python` and the PEP 658 metadata file from here, the upload API
checks the declared name and version against it, and the builder checks its output with it.
An unreadable archive raises InvalidDistributionError: the caller skips or refuses the file.
"""

from __future__ import annotations

import email.parser
import io
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from pypi_insiders.errors import InvalidDistributionError
from pypi_insiders.store import parse_filename

_MAX_METADATA = 8 * 1024 * 1024  # a METADATA file is a few KiB; anything this large is hostile


@dataclass(frozen=True)
class CoreMetadata:
    raw: bytes
    name: NormalizedName
    version: Version
    requires_python: str | None


def read_core_metadata(path: Path, filename: str | None = None, *, tar_head: bytes | None = None,
                       ) -> CoreMetadata:
    """METADATA of a wheel or PKG-INFO of an sdist, parsed; `filename` overrides `path.name`.

    `tar_head` is the start of a .tar.gz's decompressed stream, when the caller has it (the
    index decompresses every sdist anyway, to prove it whole): PKG-INFO comes near the start,
    so the archive is then not opened and decompressed a second time.
    """
    name = filename or path.name
    kind = parse_filename(name).kind
    try:
        if kind == "wheel":
            raw = _wheel_metadata(path, name)
        elif name.endswith(".zip"):
            raw = _zip_sdist_metadata(path, name)
        else:
            found = _pkg_info_in_head(tar_head, name) if tar_head is not None else None
            raw = found if found is not None else _tar_sdist_metadata(path, name)
    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError, ValueError) as error:
        msg = f"{name}: broken archive: {error}"
        raise InvalidDistributionError(msg) from None
    return parse_core_metadata(raw, name)


def parse_core_metadata(raw: bytes, filename: str) -> CoreMetadata:
    message = email.parser.BytesParser().parsebytes(raw, headersonly=True)
    name, version = message.get("Name"), message.get("Version")
    if not name or not version:
        msg = f"{filename}: metadata has no Name or Version"
        raise InvalidDistributionError(msg)
    try:
        parsed_version = Version(str(version))
    except InvalidVersion:
        msg = f"{filename}: metadata Version {version!r} is not PEP 440"
        raise InvalidDistributionError(msg) from None
    requires = message.get("Requires-Python")
    return CoreMetadata(raw, canonicalize_name(str(name)), parsed_version,
                        str(requires).strip() if requires else None)


def _read_member(stream: object, filename: str, member: str, size: int) -> bytes:
    if size > _MAX_METADATA:
        msg = f"{filename}: {member} is implausibly large ({size} bytes)"
        raise InvalidDistributionError(msg)
    data = stream.read()  # type: ignore[attr-defined]
    if not isinstance(data, bytes):
        msg = f"{filename}: cannot read {member}"
        raise InvalidDistributionError(msg)
    return data


def _wheel_metadata(path: Path, filename: str) -> bytes:
    with zipfile.ZipFile(path) as archive:
        candidates = [n for n in archive.namelist()
                      if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
        if len(candidates) != 1:
            msg = f"{filename}: expected one .dist-info/METADATA, found {len(candidates)}"
            raise InvalidDistributionError(
                msg)
        info = archive.getinfo(candidates[0])
        with archive.open(info) as stream:
            return _read_member(stream, filename, info.filename, info.file_size)


def _zip_sdist_metadata(path: Path, filename: str) -> bytes:
    with zipfile.ZipFile(path) as archive:
        candidates = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/PKG-INFO")]
        if not candidates:
            msg = f"{filename}: no top-level PKG-INFO"
            raise InvalidDistributionError(msg)
        info = archive.getinfo(candidates[0])
        with archive.open(info) as stream:
            return _read_member(stream, filename, info.filename, info.file_size)


def _pkg_info(archive: tarfile.TarFile, filename: str) -> bytes | None:
    """The top-level PKG-INFO's bytes; None when the archive, as far as it goes, has none."""
    for member in archive:
        if member.isfile() and member.name.count("/") == 1 and member.name.endswith("/PKG-INFO"):
            stream = archive.extractfile(member)
            if stream is None:
                return None
            with stream:
                return _read_member(stream, filename, member.name, member.size)
    return None


def _pkg_info_in_head(head: bytes, filename: str) -> bytes | None:
    """PKG-INFO when it lies whole within `head` (tarfile raises on a member cut short); None
    sends the caller to the whole archive."""
    try:
        with tarfile.open(fileobj=io.BytesIO(head), mode="r:") as archive:
            return _pkg_info(archive, filename)
    except (tarfile.TarError, EOFError, OSError, ValueError):
        return None


def _tar_sdist_metadata(path: Path, filename: str) -> bytes:
    with tarfile.open(path, "r:gz") as archive:
        data = _pkg_info(archive, filename)
        if data is not None:
            return data
        # Reaching here means the whole archive was read: it is complete but has no metadata.
        msg = f"{filename}: no top-level PKG-INFO"
        raise InvalidDistributionError(msg)
