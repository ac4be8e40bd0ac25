"""One answer of the web app, whatever route made it, and the plain answers every route gives alike.

A route says what its answer is: status, headers, body, the validators a conditional request
is judged by, whom it is for, and what the access log records of it. What is sent is decided
in one place after that (`finish.py`): the 304, HEAD, the headers of an answer meant for one
caller, the body as waitress sends it best. So no route repeats those rules, and a new route
cannot forget one of them.

One place also decides the shape of a refusal (its reason phrase, which twine shows; its
headers), so every route refuses the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import KW_ONLY, dataclass
from http import HTTPStatus
from typing import Final

from packaging.utils import NormalizedName

from pypi_insiders.index import progress
from pypi_insiders.web.auth import AuthError

Headers = list[tuple[str, str]]

REALM: Final = "pypi-insiders"
CHALLENGE: Final = ("WWW-Authenticate", f'Basic realm="{REALM}"')
NO_STORE: Final = ("Cache-Control", "no-store")
TEXT: Final = "text/plain; charset=utf-8"
REASON_MAX: Final = 200


@dataclass(frozen=True, slots=True)
class FileBody:
    """A file sent as the body, opened only when it is sent: never for HEAD or a 304."""

    path: str
    size: int


@dataclass(frozen=True, slots=True)
class Response:
    """What a route answers. Frozen: the upstream proxy's cache hands one to many threads.

    `headers` is never changed in place (a cached page shares its list with every answer).
    With `private` or `vary_auth` they become those of an answer for one caller when the
    Response is made (`one_caller`), so no route can forget that, and a cached page pays
    for it once.
    """

    status: str
    headers: Headers
    body: bytes | FileBody | Iterable[bytes] = b""
    _: KW_ONLY
    etag: str = ""  # with `mtime`: a conditional GET may answer 304 (only for a 200 that has one)
    mtime: int = 0
    # Whom it is for (`one_caller`): `private`, made for the credentials sent, so no shared
    # cache keeps it; `vary_auth`, another caller could get another answer.
    private: bool = False
    vary_auth: bool = False
    # What the access log records of the answer (`access_log.py`; who asked is the request's
    # REMOTE_USER).
    project: NormalizedName | None = None
    file: str | None = None  # below /packages/
    proxy_sends: int | None = None  # bytes of a file nginx sends in our place (`sendfile.py`)

    def __post_init__(self) -> None:
        if self.private or self.vary_auth:
            object.__setattr__(self, "headers", one_caller(self.headers, private=self.private))

    @property
    def code(self) -> int:
        return int(self.status[:3])

    @property
    def text(self) -> str:
        """The message of a plain-text answer (`plain`), without its line end."""
        return self.body.decode(errors="replace").removesuffix("\n") if isinstance(self.body, bytes) else ""


def one_caller(headers: Headers, *, private: bool) -> Headers:
    """The headers of an answer that depends on who asked: Vary names Authorization, so no cache
    gives it to another caller; with `private` (made for the credentials sent), Cache-Control
    says `private` too, so no shared cache keeps it at all. RFC 9111 lets a shared cache reuse
    an answer to an authorized request that says `public`, which would hand one sponsor's view
    to anyone.
    """
    out: Headers = []
    varied = False
    for key, value in headers:
        if key == "Vary":
            varied = True
            if "Authorization" not in value:
                value = f"{value}, Authorization"  # noqa: PLW2901 - the header, rewritten
        elif key == "Cache-Control" and private:
            value = _private(value)  # noqa: PLW2901
        out.append((key, value))
    return out if varied else [*out, ("Vary", "Authorization")]


def _private(cache_control: str) -> str:
    directives = [d.strip() for d in cache_control.split(",")]
    if "private" in directives:
        return cache_control
    if "public" in directives:
        return ", ".join("private" if d == "public" else d for d in directives)
    return f"private, {cache_control}"


def plain(status: str, message: str, extra: Headers | None = None, *, vary_auth: bool = False,
          project: NormalizedName | None = None) -> Response:
    """A one-line text answer; a refusal, a redirect, an error."""
    body = (message + "\n").encode()
    headers = [("Content-Type", TEXT), ("Content-Length", str(len(body))), *(extra or ())]
    return Response(status, headers, body, vary_auth=vary_auth, project=project)


def outcome(code: int, message: str) -> Response:
    """An API's answer (upload, yank): a refusal's reason is its reason phrase, and a 401 asks
    for Basic credentials again."""
    reason = phrase(code, message if code >= 400 else "")
    return plain(f"{code} {reason}", message, [CHALLENGE] if code == 401 else None)


def challenge(message: str, project: NormalizedName | None = None) -> Response:
    """No credentials, or unusable ones: clients such as pip and uv send theirs only after this."""
    return plain("401 Unauthorized", message, [CHALLENGE, NO_STORE], project=project)


def denied(refusal: AuthError) -> Response:
    """Credentials that cannot be accepted on a read: ask again, or wait (too many failures)."""
    if refusal.status == 429:
        return plain("429 Too Many Requests", refusal.message,
                    [("Retry-After", str(refusal.retry_after)), NO_STORE])
    return challenge(refusal.message)


def redirect(location: str) -> Response:
    return plain("301 Moved Permanently", f"moved to {location}", [("Location", location)])


def not_generated() -> Response:
    return plain("503 Service Unavailable", "the index has not been generated yet",
                [("Retry-After", str(progress.RETRY_AFTER))])


def being_generated(project: NormalizedName) -> Response:
    """A local project whose page the first generation has not written yet: never upstream's."""
    return plain("503 Service Unavailable", "this project's page is being generated; try again shortly",
                 [("Retry-After", str(progress.RETRY_AFTER))], project=project)


def phrase(code: int, reason: str = "") -> str:
    """A refusal's reason as the reason phrase, the way the public index does it: twine shows
    only the status line unless --verbose. Made one printable ASCII line (a header may carry
    nothing else); the standard phrase when nothing is left.
    """
    shown = "".join(c if " " <= c <= "~" else " " for c in reason)
    shown = " ".join(shown.split())[:REASON_MAX]
    if shown:
        return shown
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Unknown"
