"""The legacy upload API (what `twine upload` speaks), with the public index's rules.

An upload is checked completely before anything reaches the store: credentials, the filename,
the form's name and version against the filename and against the archive's own metadata, the
digests and the size. The file arrives in a hidden temporary file in the store root and is
published with `Store.add`, which never overwrites; the watcher then puts it in the index,
and the upload is answered once the project's generated pages list the file (`index_visibility`),
so a job that uploads and then installs never races the watcher.
A filename, once published, is never accepted again once its file is gone: the store's
registry (`Store.for_config` brings it) records every name, and the files the index lists.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, BinaryIO

from pypi_insiders.config import Config
from pypi_insiders.errors import FilenameReusedError, InvalidDistributionError, StoreError, UploadError
from pypi_insiders.index.yanks import YankState
from pypi_insiders.store import ParsedFilename, Store, parse_filename
from pypi_insiders.web.auth import Authenticator
from pypi_insiders.web.index_visibility import WAIT_MARGIN, IndexView
from pypi_insiders.web.multipart import FILE_FIELD, BodyReader, FilePart, Form, Parser, boundary_of
from pypi_insiders.web.response import Response, outcome
from pypi_insiders.web.upload_checks import check_archive, check_filename, check_form, uploader
from pypi_insiders.web.users import User
from pypi_insiders.web.yank_api import YankApi

log = logging.getLogger(__name__)

PATHS = frozenset({"/", "/legacy", "/legacy/"})  # where twine and uv send uploads (POST)

FORM_FIELDS_LIMIT = 8 * 1024 * 1024  # all text fields together; a long README description fits


class Uploads:
    def __init__(self, config: Config, store: Store, auth: Authenticator | None = None) -> None:
        """`store` as writers open it (`Store.for_config`): its registry keeps names from coming back."""
        if store.registry is None:
            msg = "uploads need the store's filename registry: open the store with Store.for_config"
            raise ValueError(msg)
        self.store = store
        self.max_size = config.upload.max_size
        # `is not None`: an Authenticator's len() is its number of users, and no users is falsy.
        self.auth = auth if auth is not None else Authenticator(config.upload.users_file)
        self.index = IndexView(config.paths.index)
        self.wait = config.index.debounce + WAIT_MARGIN
        self.yanks = YankApi(self.auth, YankState(config.paths.state), self.index, self.wait)
        self._commit = threading.Lock()

    def handle(self, environ: Mapping[str, Any]) -> Response:
        """The answer: a one-line message, and for a refusal its reason as the reason phrase."""
        client = str(environ.get("REMOTE_ADDR", "-"))
        user = "-"
        try:
            account = uploader(self.auth, environ)
            user = account.name
            form = self._receive(environ)
            try:
                return outcome(200, self._accept(form, account, client))
            finally:
                form.discard()
        except UploadError as error:
            log.warning("upload refused (%d) for user %s from %s: %s", error.status, user, client, error,
                        extra={"CLIENT": client, "USER": user})
            return outcome(error.status, str(error))

    def _receive(self, environ: Mapping[str, Any]) -> Form:
        if environ.get("REQUEST_METHOD") != "POST":
            raise UploadError(405, "uploads are POST requests")
        try:
            length = int(str(environ.get("CONTENT_LENGTH") or ""))
        except ValueError:
            raise UploadError(411, "Content-Length required") from None
        if length > self.max_size + FORM_FIELDS_LIMIT:
            raise UploadError(413, f"request of {length} bytes exceeds the upload limit of "
                                   f"{self.max_size} bytes")
        boundary = boundary_of(str(environ.get("CONTENT_TYPE", "")))
        stream: BinaryIO = environ["wsgi.input"]
        parser = Parser(BodyReader(stream, length), boundary, spool_dir=self.store.root,
                        max_file=self.max_size, max_fields=FORM_FIELDS_LIMIT, check_filename=check_filename)
        return parser.parse()

    def _accept(self, form: Form, account: User, client: str) -> str:
        if form.get(":action") != "file_upload":
            raise UploadError(400, f"unsupported :action {form.get(':action')!r}; only file_upload")
        if form.file is None:
            raise UploadError(400, f"no file in form field {FILE_FIELD!r}")
        file = form.file
        parsed = parse_filename(file.filename)
        if not account.upload.covers(parsed.project):
            raise UploadError(403, f"user {account.name!r} may not upload to {parsed.project}")
        check_form(form, file, parsed)
        check_archive(file, parsed)
        with self._commit:
            try:
                message, unlisted = self._publish(file, parsed)
            except OSError as error:
                log.error("cannot publish %s: %s", file.filename, error, extra={"FILE": file.filename})
                raise UploadError(500, f"{file.filename}: the server cannot write it") from None
        fields = {"PROJECT": parsed.project, "FILE": file.filename, "CLIENT": client, "USER": account.name}
        log.info("upload accepted from %s, user %s: %s", client, account.name, message, extra=fields)
        if unlisted and not self.index.wait_listed(parsed.project, file.filename, self.wait):
            # Stored durably, and the next scan lists it: a 5xx would tell the client the upload
            # failed when a retry can only be told "identical file already uploaded".
            log.warning("%s is stored but not yet listed by the index after %g s; is the index "
                        "service's watcher running?", file.filename, self.wait, extra=fields)
            message += f" (not yet listed by the index after {self.wait:g} s)"
        return message

    def _publish(self, file: FilePart, parsed: ParsedFilename) -> tuple[str, bool]:
        """Compare with what the index lists and the record holds, then link into the store.

        Returns the message and whether the index does not list the file yet.
        """
        listed = self.index.listed(parsed.project)
        self.store.remember(listed)  # files dropped in by hand count as published too
        sha256 = file.digests["sha256_digest"]
        if file.filename in listed:
            if listed[file.filename] != sha256:
                raise UploadError(409, f"{file.filename}: already exists with different content")
            return f"{file.filename}: identical file already uploaded", False
        present = self.store.contains(file.filename, project=parsed.project)  # not yet in the index
        if parsed.kind == "sdist" and not present:
            held = [*listed, *self.store.files_of(parsed.project)]
            self._refuse_a_second_sdist(file.filename, parsed, held)
        try:
            self.store.add(file.filename, file.path, project=parsed.project)
        except FilenameReusedError:
            raise UploadError(400, f"{file.filename}: this filename was used before and cannot be "
                                   "reused; upload a new version") from None
        except StoreError:
            raise UploadError(409, f"{file.filename}: already exists with different content") from None
        return f"{file.filename}: {'identical file already uploaded' if present else 'uploaded'}", True

    @staticmethod
    def _refuse_a_second_sdist(filename: str, parsed: ParsedFilename, present: list[str]) -> None:
        """One sdist per release, as on the public index: installers pick an sdist by version, and
        two of them (`1.0.tar.gz` and `1.0.0.zip`) would make the choice arbitrary."""
        for other in present:
            try:
                existing = parse_filename(other)
            except InvalidDistributionError:
                continue
            if existing.kind == "sdist" and existing.version == parsed.version and other != filename:
                raise UploadError(400, f"{filename}: release {parsed.version} already has an sdist "
                                       f"({other}); only one sdist per release")
