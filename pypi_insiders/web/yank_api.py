"""`POST /-/yank` and `POST /-/unyank`: yanking over HTTP, for a user whose upload scope covers
the project.

The body is a plain form (`curl -K FILE -d project=demo -d version=1.0 -d reason=broken
.../-/yank`, FILE holding `user = "ci:TOKEN"`). Credentials are checked as for uploads: none
or malformed ask again (401), wrong ones are refused (403), and so is a project outside the
user's upload scope. The yank goes to `<state>/yanked.json` (`index.yanks`); the answer comes
once the project's generated pages show it, whichever process took the request, as for
uploads (`index_visibility`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, BinaryIO
from urllib.parse import parse_qs

from packaging.utils import canonicalize_name

from pypi_insiders.errors import UploadError, UsageError
from pypi_insiders.index.yanks import YankState, check_reason, version_key
from pypi_insiders.web import upload_checks
from pypi_insiders.web.auth import Authenticator
from pypi_insiders.web.index_visibility import IndexView
from pypi_insiders.web.response import Response, outcome
from pypi_insiders.web.users import User

log = logging.getLogger(__name__)

PATHS = frozenset({"/-/yank", "/-/unyank"})
_MAX_BODY = 8192
_FORM = "application/x-www-form-urlencoded"


class YankApi:
    def __init__(self, auth: Authenticator, state: YankState, index: IndexView, wait: float) -> None:
        self.auth, self.state, self.index, self.wait = auth, state, index, wait

    def handle(self, environ: Mapping[str, Any], path: str) -> Response:
        """The answer: a one-line message, and for a refusal its reason as the reason phrase."""
        client, user = str(environ.get("REMOTE_ADDR", "-")), "-"
        try:
            account = upload_checks.uploader(self.auth, environ)
            user = account.name
            form = _read_form(environ)
            return outcome(200, self._apply(form, account, undo=path == "/-/unyank"))
        except UploadError as error:
            log.warning("%s refused (%d) for user %s from %s: %s", path, error.status, user, client, error,
                        extra={"CLIENT": client, "USER": user})
            return outcome(error.status, str(error))

    def _apply(self, form: dict[str, str], account: User, *, undo: bool) -> str:
        project, version, reason = form.get("project", ""), form.get("version", ""), form.get("reason", "")
        if not project or not version:
            raise UploadError(400, "the form needs the fields project and version")
        name = canonicalize_name(project)
        try:
            key, reason = version_key(version), check_reason(reason)
        except UsageError as error:
            raise UploadError(400, str(error)) from None
        if not account.upload.covers(name):
            raise UploadError(403, f"user {account.name!r} may not change {name}")
        if not self.index.release(name, key):
            raise UploadError(404, f"{name} has no release {key} in this index")
        by = f"{account.name} (API)"
        changed = self.state.unyank(name, key, by) if undo else self.state.yank(name, key, reason, by)
        if undo and not changed:
            raise UploadError(409, f"{name} {key} is not yanked here (or only in the configuration)")
        expected: object = False if undo else (reason or True)
        if not self.index.wait(name, lambda: self._shows(name, key, expected), self.wait):
            log.warning("%s %s: the index does not show the change after %g s", name, key, self.wait,
                        extra={"PROJECT": name, "VERSION": key})
        return f"{name} {key}: {'un-yanked' if undo else 'yanked'}"

    def _shows(self, name: str, key: str, expected: object) -> bool:
        files = self.index.release(canonicalize_name(name), key)
        return bool(files) and all(f.get("yanked") == expected for f in files)


def _read_form(environ: Mapping[str, Any]) -> dict[str, str]:
    if environ.get("REQUEST_METHOD") != "POST":
        raise UploadError(405, "this takes POST")
    if str(environ.get("CONTENT_TYPE", "")).split(";")[0].strip().lower() != _FORM:
        raise UploadError(415, f"send the fields as {_FORM}")
    try:
        length = int(str(environ.get("CONTENT_LENGTH") or ""))
    except ValueError:
        raise UploadError(411, "Content-Length required") from None
    if length > _MAX_BODY:
        raise UploadError(413, f"a form of {length} bytes; at most {_MAX_BODY}")
    stream: BinaryIO = environ["wsgi.input"]
    body = stream.read(length)
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                          max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        raise UploadError(400, "the form is not UTF-8 url-encoded fields") from None
    return {key: values[0] for key, values in fields.items()}
