"""The one step between a route's `Response` and what waitress sends.

Every answer passes here, in this order: the conditional GET (RFC 9110 13: 304 when the
client's copy is current), HEAD (the headers of GET, no body), a file's byte range
(`ranges.py`: 206 or 416), and the body as the iterable waitress sends best. Routes only say
what their answer is; a rule written here holds for every route, old and new. (Whom an
answer is for is settled by the Response itself: `response.one_caller`.)
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from dataclasses import replace
from email.utils import formatdate, parsedate_to_datetime
from typing import Any, BinaryIO, Final

from pypi_insiders.web import ranges
from pypi_insiders.web.response import FileBody, Headers, Response, plain

CHUNK: Final = 256 * 1024
# waitress copies a body into its output buffer, which becomes a temp file past 1 MiB (its
# outbuf_overflow): the root list of 20,000 projects (1.1 MB) was written to disk and read
# back for every request. A body this large goes out through wsgi.file_wrapper instead,
# which waitress reads from as it sends.
LARGE_BODY: Final = 256 * 1024
# RFC 9110 15.4.5: what a 304 carries of the 200 it stands for; never the body's own headers.
_KEPT_BY_304: Final = frozenset({"Cache-Control", "Content-Location", "Date", "ETag", "Expires",
                                 "Last-Modified", "Vary"})
_NOT_MODIFIED: Final = "304 Not Modified"


def finish(environ: Mapping[str, Any], response: Response) -> tuple[Response, Iterable[bytes]]:
    """The answer as sent (its status and headers, for `start_response` and the access log) and
    its body."""
    if response.etag and (environ.get("HTTP_IF_NONE_MATCH") or environ.get("HTTP_IF_MODIFIED_SINCE")) \
            and not_modified(environ, response.etag, response.mtime):
        _close(response.body)
        kept = [(k, v) for k, v in response.headers if k in _KEPT_BY_304]
        return replace(response, status=_NOT_MODIFIED, headers=kept, body=b""), ()
    body = response.body
    if isinstance(body, FileBody) and response.code == 200:
        response = replace(response, headers=[*response.headers, ranges.ACCEPT_RANGES])
    if environ.get("REQUEST_METHOD") == "HEAD":
        _close(body)
        return response, ()
    if isinstance(body, bytes):
        return response, _in_memory(environ, body)
    if isinstance(body, FileBody):
        return _file(environ, response, body)
    return response, body


def not_modified(environ: Mapping[str, Any], etag: str, mtime: int) -> bool:
    """RFC 9110 13.1: If-None-Match decides when present; If-Modified-Since only otherwise."""
    inm = environ.get("HTTP_IF_NONE_MATCH")
    if isinstance(inm, str):
        if inm == etag:
            return True
        tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
        return "*" in tags or etag in tags
    ims = environ.get("HTTP_IF_MODIFIED_SINCE")
    if not isinstance(ims, str) or not ims:
        return False
    try:
        since = parsedate_to_datetime(ims).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return False
    return mtime <= since


def validators(etag: str, mtime: int, cache_control: str) -> Headers:
    """The headers a conditional request is judged by, and how long a copy stays fresh."""
    return [("ETag", etag), ("Last-Modified", formatdate(mtime, usegmt=True)),
            ("Cache-Control", cache_control)]


def _in_memory(environ: Mapping[str, Any], body: bytes) -> Iterable[bytes]:
    """`body` as the WSGI iterable waitress sends best: read in place when it is large."""
    wrapper = environ.get("wsgi.file_wrapper")
    if wrapper is None or len(body) < LARGE_BODY:
        return (body,)
    wrapped: Iterable[bytes] = wrapper(io.BytesIO(body), CHUNK)  # BytesIO shares the bytes
    return wrapped


def _file(environ: Mapping[str, Any], response: Response, body: FileBody) -> tuple[Response, Iterable[bytes]]:
    part: ranges.ByteRange | None = None
    if response.code == 200:
        try:
            part = ranges.requested(environ, body.size, response.etag)
        except ranges.Unsatisfiable:
            refused = plain("416 Range Not Satisfiable", "the range starts past the end of the file",
                            [("Content-Range", f"bytes */{body.size}")])
            answer = replace(response, status=refused.status, headers=refused.headers, body=refused.body,
                             etag="", proxy_sends=None)
            return answer, _in_memory(environ, refused.text.encode() + b"\n")
    try:
        stream = open(body.path, "rb")  # noqa: SIM115,PTH123 - closed by the server
    except OSError:  # deleted since the route saw it
        gone = plain("404 Not Found", "no such file")
        return finish(environ, replace(response, status=gone.status, headers=gone.headers, body=gone.body,
                                       etag="", private=False, vary_auth=False))
    length = body.size
    if part is not None:
        stream.seek(part.first)
        length = part.length
        kept = [(k, v) for k, v in response.headers if k != "Content-Length"]
        response = replace(response, status="206 Partial Content", headers=[
            *kept, ("Content-Range", part.content_range), ("Content-Length", str(length))])
    wrapper = environ.get("wsgi.file_wrapper")
    # waitress's wrapper sends Content-Length bytes from where the file stands
    sent: Iterable[bytes] = wrapper(stream, CHUNK) if wrapper else _chunks(stream, length)
    return response, sent


def _chunks(stream: BinaryIO, length: int) -> Iterable[bytes]:
    with stream:
        while length > 0 and (chunk := stream.read(min(CHUNK, length))):
            length -= len(chunk)
            yield chunk


def _close(body: bytes | FileBody | Iterable[bytes]) -> None:
    """A streamed body that will not be sent: closed now, as the server would after sending it."""
    if not isinstance(body, bytes | FileBody) and hasattr(body, "close"):
        body.close()
