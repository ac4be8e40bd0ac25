"""What an upload must prove before it reaches the store: a plain distribution filename, a form
that agrees with it, digests that match, and an archive that is whole and says the same.

Each check raises UploadError with the HTTP status and one line for the client.
"""

from __future__ import annotations

import gzip
import logging
import zipfile
from collections.abc import Mapping
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from pypi_insiders.errors import InvalidDistributionError, UploadError
from pypi_insiders.metadata import read_core_metadata
from pypi_insiders.store import ParsedFilename, is_hidden, parse_filename
from pypi_insiders.web.auth import Authenticator, AuthError
from pypi_insiders.web.multipart import FilePart, Form
from pypi_insiders.web.users import User

_FILETYPES = {"wheel": "bdist_wheel", "sdist": "sdist"}
_DIGESTS = ("sha256_digest", "md5_digest", "blake2_256_digest")
_CHUNK = 1024 * 1024
# The file system's limit on one name (255 bytes), less what the index adds for the PEP 658
# metadata file beside it and for that file's atomic write (".<name>.metadata.XXXXXXXX.tmp"):
# a longer name could be stored but never be served whole.
MAX_FILENAME_BYTES = 255 - len(".metadata") - len("..XXXXXXXX.tmp")  # files.atomic_write's temp

log = logging.getLogger(__name__)


def check_filename(filename: str) -> None:
    """Refuse a bad name as soon as the part headers arrive, before the file is spooled."""
    if any(c in filename for c in "/\\\0") or filename in ("", ".", "..") or not filename.isprintable():
        raise UploadError(400, f"{filename!r}: the filename must be a plain file name, without path parts")
    if len(filename.encode()) > MAX_FILENAME_BYTES:
        raise UploadError(400, f"{filename[:40]!r}...: the filename is longer than "
                               f"{MAX_FILENAME_BYTES} bytes")
    if is_hidden(filename):
        raise UploadError(400, f"{filename!r}: hidden and temporary file names are not distributions")
    try:
        parse_filename(filename)
    except InvalidDistributionError as error:
        raise UploadError(400, f"not a distribution filename: {error}") from None


def check_form(form: Form, file: FilePart, parsed: ParsedFilename) -> None:
    """The declared name, version, file type and digests must all agree with the file."""
    name, version = form.get("name"), form.get("version")
    if not name or not version:
        raise UploadError(400, "the form must give the distribution's name and version")
    if canonicalize_name(name) != parsed.project:
        raise UploadError(400, f"{file.filename}: does not belong to the declared project {name!r}")
    try:
        declared = Version(version)
    except InvalidVersion:
        raise UploadError(400, f"declared version {version!r} is not a PEP 440 version") from None
    if declared != parsed.version:
        raise UploadError(400, f"{file.filename}: is not version {version} as declared")
    filetype = form.get("filetype")
    if filetype and filetype != _FILETYPES[parsed.kind]:
        raise UploadError(400, f"{file.filename}: declared filetype {filetype!r}, but it is a {parsed.kind}")
    given = {key: (form.get(key) or "").strip().lower() for key in _DIGESTS}
    if not any(given.values()):
        raise UploadError(400, "the form gives no digest (sha256_digest, md5_digest or blake2_256_digest)")
    for key, value in given.items():
        if value and value != file.digests[key]:
            raise UploadError(400, f"{file.filename}: {key} does not match the received file "
                                   "(truncated or corrupted upload?)")
    if file.size == 0:
        raise UploadError(400, f"{file.filename}: empty file")


def check_archive(file: FilePart, parsed: ParsedFilename) -> None:
    """The archive must be whole and its core metadata must name the same project and version."""
    try:
        metadata = read_core_metadata(file.path, file.filename)
    except InvalidDistributionError as error:
        raise UploadError(400, str(error)) from None
    check_complete(file)
    if metadata.name != parsed.project:
        raise UploadError(400, f"{file.filename}: its metadata names project {metadata.name!r}")
    if metadata.version != parsed.version:
        raise UploadError(400, f"{file.filename}: its metadata says version {metadata.version}")


def check_complete(file: FilePart) -> None:
    """Every byte of the archive must check out: an sdist's PKG-INFO comes first, so a file cut
    after it still yields metadata, and a zip member can be corrupt behind an intact directory.
    """
    try:
        if file.filename.endswith((".whl", ".zip")):
            with zipfile.ZipFile(file.path) as archive:
                corrupt = archive.testzip()  # reads every member against its CRC
            if corrupt is not None:
                raise UploadError(400, f"{file.filename}: broken archive: {corrupt} is corrupt")
        else:
            with gzip.open(file.path, "rb") as stream:  # to the end, where the CRC and length are
                while stream.read(_CHUNK):
                    pass
    except (OSError, EOFError, zipfile.BadZipFile, ValueError) as error:
        raise UploadError(400, f"{file.filename}: broken archive: {error}") from None


def uploader(auth: Authenticator, environ: Mapping[str, Any]) -> User:
    """Who writes (uploads, yanks): missing or malformed credentials ask again (401), wrong or
    expired ones are refused (403)."""
    try:
        account = auth.user(environ)
    except AuthError as denied:
        if denied.refused and not len(auth):
            log.warning("%s has no users: every upload is refused", auth.path, extra={"FILE": str(auth.path)})
        raise UploadError(403 if denied.refused else denied.status, denied.message) from None
    if account is None:
        raise UploadError(401, "authentication required (HTTP Basic)")
    return account
