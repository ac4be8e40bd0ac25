"""The responses the app builds by hand: plain-text refusals, redirects, private pages, file bodies.

One place decides the shape of a refusal (its reason phrase, which twine shows; its headers),
so every route refuses the same way.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any, BinaryIO

from pypi_insiders.index import progress
from pypi_insiders.web import access, page_cache
from pypi_insiders.web.access import View
from pypi_insiders.web.auth import AuthError
from pypi_insiders.web.fallback import text_answer
from pypi_insiders.web.negotiate import Format

Response = tuple[str, page_cache.Headers, Iterable[bytes]]
CHUNK = 256 * 1024
# waitress copies a body into its output buffer, which becomes a temp file past 1 MiB (its
# outbuf_overflow): the root list of 20,000 projects (1.1 MB) was written to disk and read
# back for every request. A body this large goes out through wsgi.file_wrapper instead,
# which waitress reads from as it sends.
LARGE_BODY = 256 * 1024


def body_of(environ: Mapping[str, Any], body: bytes) -> Iterable[bytes]:
    """`body` as the WSGI iterable waitress sends best: read in place when it is large."""
    wrapper = environ.get("wsgi.file_wrapper")
    if wrapper is None or len(body) < LARGE_BODY:
        return (body,)
    wrapped: Iterable[bytes] = wrapper(io.BytesIO(body), CHUNK)  # BytesIO shares the bytes
    return wrapped


def plain(status: str, message: str, extra: page_cache.Headers | None = None) -> Response:
    answer = text_answer(status, message, extra)
    return answer.status, answer.headers, [answer.body]


def not_generated() -> Response:
    return plain("503 Service Unavailable", "the index has not been generated yet",
                 [("Retry-After", str(progress.RETRY_AFTER))])


def being_generated() -> Response:
    """A local project whose page the first generation has not written yet: never upstream's."""
    return plain("503 Service Unavailable", "this project's page is being generated; try again shortly",
                 [("Retry-After", str(progress.RETRY_AFTER))])


def redirect(location: str) -> Response:
    return plain("301 Moved Permanently", f"moved to {location}", [("Location", location)])


def denied(denied: AuthError) -> Response:
    if denied.status == 429:
        return plain("429 Too Many Requests", denied.message,
                      [("Retry-After", str(denied.retry_after)), access.NO_STORE])
    answer = access.challenge(denied.message)
    return answer.status, answer.headers, (answer.body,)


def private_body(environ: Mapping[str, Any], body: bytes, fmt: Format, view: View) -> Response:
    """A page rendered for one scope: never kept by a shared cache, never reused for another caller."""
    cache = "private, max-age=30" if view.private else "no-cache"
    return "200 OK", [("Content-Type", fmt.content_type), ("Content-Length", str(len(body))),
                      ("Cache-Control", cache), ("Vary", "Accept, Authorization")], body_of(environ, body)


REASON_MAX = 200


def phrase(code: int, reason: str = "") -> str:
    """A refusal's reason as the reason phrase, the way the public index does it: twine shows
    only the status line unless --verbose. Made one printable ASCII line (a header may carry
    nothing else); the standard phrase when nothing is left.
    """
    text = "".join(c if " " <= c <= "~" else " " for c in reason)
    text = " ".join(text.split())[:REASON_MAX]
    if text:
        return text
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Unknown"


def chunks(stream: BinaryIO) -> Iterable[bytes]:
    with stream:
        while chunk := stream.read(CHUNK):
            yield chunk
