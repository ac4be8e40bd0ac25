"""Core metadata read out of a distribution archive, so that what we serve is what the file says.

The index takes `requires-python` and the PEP 658 metadata file from here, the upload API
checks the declared name and version against it, and the builder checks its output with it.
An unreadable archive raises InvalidDistributionError: the caller skips or refuses the file.
"""

from __future__ import annotations

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


def read_core_metadata(path: Path, filename: str | None = None, *, head: bytes | None = None,
                       ) -> CoreMetadata:
    """METADATA of a wheel or PKG-INFO of an sdist, parsed; `filename` overrides `path.name`.

    `head`, when the caller has it (the index reads every file anyway, to hash it and prove
    it whole), is a small wheel's whole content or the start of a .tar.gz's decompressed
    stream: PKG-INFO comes near the start. The file is then not opened a second time.
    """
    name = filename or path.name
    if not name.endswith((".whl", ".zip", ".tar.gz")):
        parse_filename(name)  # raises, naming what the file is not
    try:
        if name.endswith(".whl"):
            raw = _wheel_metadata(io.BytesIO(head) if head is not None else path, name)
        elif name.endswith(".zip"):
            raw = _zip_sdist_metadata(path, name)
        else:
            found = _pkg_info_in_head(head, name) if head is not None else None
            raw = found if found is not None else _tar_sdist_metadata(path, name)
    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError, ValueError) as error:
        msg = f"{name}: broken archive: {error}"
        raise InvalidDistributionError(msg) from None
    return parse_core_metadata(raw, name)


def parse_core_metadata(raw: bytes, filename: str) -> CoreMetadata:
    fields = header_fields(raw, ("name", "version", "requires-python"))
    name, version = fields.get("name"), fields.get("version")
    if not name or not version:
        msg = f"{filename}: metadata has no Name or Version"
        raise InvalidDistributionError(msg)
    try:
        parsed_version = Version(version)
    except InvalidVersion:
        msg = f"{filename}: metadata Version {version!r} is not PEP 440"
        raise InvalidDistributionError(msg) from None
    requires = fields.get("requires-python")
    return CoreMetadata(raw, canonicalize_name(name), parsed_version,
                        requires.strip() if requires else None)


def header_fields(raw: bytes, wanted: tuple[str, ...]) -> dict[str, str]:
    """The first value of each wanted header (lower-cased names) in an RFC 822 header block.

    The index reads 200,000 of these in a cold start and needs three single-line fields:
    the email package's parser builds a whole message for each, which was a fifth of the
    time spent per file. Same reading where it matters: names match in any case, the first
    occurrence wins, folded lines are joined, and the headers end at the first blank line
    or at the first line that is not a header.
    """
    found: dict[str, str] = {}
    current: str | None = None
    text = raw.decode("utf-8", "surrogateescape")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    end = text.find("\n\n")  # the body (a description, maybe long) is never looked at
    for line in (text if end < 0 else text[:end]).split("\n"):
        if line[:1] in (" ", "\t"):
            if current is not None:
                found[current] += "\n" + line
            continue
        key, colon, value = line.partition(":")
        if not colon or not key or key != key.strip():
            break
        key = key.lower()
        current = key if key in wanted and key not in found else None
        if current is not None:
            found[current] = value.lstrip(" \t")
    return found


def _read_member(stream: object, filename: str, member: str, size: int) -> bytes:
    if size > _MAX_METADATA:
        msg = f"{filename}: {member} is implausibly large ({size} bytes)"
        raise InvalidDistributionError(msg)
    data = stream.read()  # type: ignore[attr-defined]
    if not isinstance(data, bytes):
        msg = f"{filename}: cannot read {member}"
        raise InvalidDistributionError(msg)
    return data


def _wheel_metadata(source: Path | io.BytesIO, filename: str) -> bytes:
    with zipfile.ZipFile(source) as archive:
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
