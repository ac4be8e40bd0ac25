"""The one HTTP client for every request we send: upstream pages, the status check, uploads.

On urllib3 (bookworm's 1.26), for what three hand-written urllib clients each did partly: one
pool of kept-alive connections per host (a proxy miss no longer costs a TLS handshake), gzip,
a connect and a read timeout plus a deadline for the whole body, a size limit, and the one place
where credentials become a header. A URL's `user:password@` is turned into HTTP Basic here and
cut out of the URL: no log line, exception message or redirect target carries it, and the
header is dropped when a redirect leaves the origin it was meant for.

Git fetches are the exception: dulwich brings its own urllib3 pool (see `fetch.git`).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import Final
from urllib.parse import urljoin, urlsplit, urlunsplit

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from pypi_insiders import __version__

log = logging.getLogger(__name__)

USER_AGENT: Final = f"pypi-insiders/{__version__}"
MAX_BODY: Final = 64 * 1024 * 1024
_MAX_REDIRECTS: Final = 5
_CHUNK: Final = 16 * 1024  # decoded per read: bounds what one gzip chunk can inflate to
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})


class HttpError(Exception):
    """The request got no whole answer: refused, timed out, cut short, too large, bad TLS.

    The message names the URL without credentials and says what went wrong in a few words.
    """


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    def header(self) -> str:
        secret = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(secret).decode()


_USER_PART = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")


def split_credentials(url: str) -> tuple[str, Credentials | None]:
    """The URL without user:password, and the credentials it carried (None without any)."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    netloc = parts.hostname or ""
    netloc = f"[{netloc}]" if ":" in netloc else netloc
    if parts.port:
        netloc += f":{parts.port}"
    plain = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return plain, Credentials(parts.username, parts.password or "")


_LOGIN_SCHEMES = frozenset({"ssh", "git+ssh", "ssh+git"})


def display_url(url: str) -> str:
    """The URL as it may appear in a log line, a message or a page: without the user part at
    all, since over HTTP a user name alone can be the secret (a token in place of the user).
    An SSH URL keeps its login name (`ssh://git@host/...`): ssh authenticates with keys,
    never with the URL, and the login is what a reader needs to see which account is used.
    """
    try:
        plain, credentials = split_credentials(url)
        scheme = urlsplit(url).scheme.lower()
    except ValueError:  # a port or host urllib cannot take apart: a message about it still masks
        return _USER_PART.sub(r"\1", url)
    if credentials is None or scheme not in _LOGIN_SCHEMES:
        return plain
    scheme, rest = plain.split("://", 1)
    return f"{scheme}://{credentials.username}@{rest}"


@dataclass(frozen=True)
class Response:
    """A complete answer: the body was read to its end (or to its declared length)."""

    status: int
    url: str  # where it came from after redirects, without credentials
    headers: Mapping[str, str] = field(repr=False)  # case-insensitive (urllib3's HTTPHeaderDict)
    body: bytes = field(repr=False)

    @property
    def media_type(self) -> str:
        """The Content-Type without parameters, lower-case; "" when absent."""
        return self._content_type().get_content_type() if "Content-Type" in self.headers else ""

    @property
    def framed(self) -> bool:
        """The body's end was announced (Content-Length or chunked), so a short one was caught;
        otherwise only the connection's close ended it, and a cut looks like an end."""
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        return chunked or "Content-Length" in self.headers

    @property
    def charset(self) -> str:
        return self._content_type().get_content_charset() or "utf-8"

    def _content_type(self) -> Message:
        message = Message()
        message["Content-Type"] = self.headers.get("Content-Type", "")
        return message

    def text(self, limit: int = 200) -> str:
        """The start of the body on one line, for an error message."""
        return " ".join(self.body[: limit * 4].decode(self.charset, "replace").split())[:limit]


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


class HttpClient:
    """Thread-safe; one per process (or per command run), passed to whoever sends requests."""

    def __init__(self, *, pool_size: int = 16, user_agent: str = USER_AGENT) -> None:
        # retries=False: an error is reported at once; the callers decide about trying again
        # (the proxy serves its stale copy, the status page shows nothing, the fetcher backs off).
        # urllib3 replaces (does not merge) the pool's headers with a request's own: ours are
        # therefore added to every request, or upstream would see urllib3's User-Agent.
        self._user_agent = user_agent
        self._pool = urllib3.PoolManager(num_pools=32, maxsize=pool_size, block=False, retries=False,
                                         headers={"User-Agent": user_agent})

    def close(self) -> None:
        self._pool.clear()  # type: ignore[no-untyped-call]

    def get(self, url: str, *, headers: Mapping[str, str] | None = None, timeout: float,
            max_bytes: int = MAX_BODY, auth: Credentials | None = None) -> Response:
        """Any status comes back as a Response; only a failure to get one raises HttpError."""
        return self.request("GET", url, headers=headers, timeout=timeout, max_bytes=max_bytes, auth=auth)

    def request(self, method: str, url: str, *, body: bytes | None = None,
                headers: Mapping[str, str] | None = None, timeout: float,
                max_bytes: int = MAX_BODY, auth: Credentials | None = None) -> Response:
        """Redirects are followed for GET only, and never take the credentials to another origin."""
        url, in_url = split_credentials(url)
        credentials = auth or in_url
        origin = _origin(url)
        deadline = time.monotonic() + timeout
        for _hop in range(_MAX_REDIRECTS + 1):
            sent = {"User-Agent": self._user_agent, "Accept-Encoding": "gzip", **(headers or {})}
            if credentials is not None and _origin(url) == origin:
                sent["Authorization"] = credentials.header()
            status, got, data = self._once(method, url, body, sent, deadline=deadline, max_bytes=max_bytes)
            location = got.get("Location")
            if method != "GET" or status not in _REDIRECTS or not location:
                return Response(status, url, got, data)
            url = display_url(urljoin(url, location))
        msg = f"{url}: more than {_MAX_REDIRECTS} redirects"
        raise HttpError(msg)

    def _once(self, method: str, url: str, body: bytes | None, headers: dict[str, str], *,
              deadline: float, max_bytes: int) -> tuple[int, Mapping[str, str], bytes]:
        left = max(deadline - time.monotonic(), 0.001)
        try:
            response: urllib3.HTTPResponse = self._pool.request(  # type: ignore[no-untyped-call]
                method, url, body=body, headers=headers, redirect=False, preload_content=False,
                timeout=urllib3.Timeout(connect=left, read=left), enforce_content_length=True)
        except HTTPError as error:
            msg = f"{url}: {_reason(error)}"
            raise HttpError(msg) from None
        try:
            return response.status, response.headers, _read(response, url, deadline, max_bytes)
        except HttpError:
            response.close()  # half read: the connection must not go back to the pool
            raise
        finally:
            response.release_conn()

    def stream(self, url: str, *, headers: Mapping[str, str] | None = None, timeout: float,
               auth: Credentials | None = None) -> Stream:
        """A GET whose body is read chunk by chunk (large files): the caller must close it.

        `timeout` bounds connecting and each wait for bytes; the caller bounds the whole.
        No gzip: a file's bytes are hashed as they arrive, exactly as sent.
        """
        url, in_url = split_credentials(url)
        credentials = auth or in_url
        origin = _origin(url)
        for _hop in range(_MAX_REDIRECTS + 1):
            sent = {"User-Agent": self._user_agent, "Accept-Encoding": "identity", **(headers or {})}
            if credentials is not None and _origin(url) == origin:
                sent["Authorization"] = credentials.header()
            try:
                response: urllib3.HTTPResponse = self._pool.request(  # type: ignore[no-untyped-call]
                    "GET", url, headers=sent, redirect=False, preload_content=False,
                    timeout=urllib3.Timeout(connect=timeout, read=timeout), enforce_content_length=True)
            except HTTPError as error:
                msg = f"{url}: {_reason(error)}"
                raise HttpError(msg) from None
            location = response.headers.get("Location")
            if response.status not in _REDIRECTS or not location:
                return Stream(response.status, url, response.headers, response)
            response.drain_conn()
            response.release_conn()
            url = display_url(urljoin(url, location))
        msg = f"{url}: more than {_MAX_REDIRECTS} redirects"
        raise HttpError(msg)

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Stream:
    """An answer whose body is still on the wire; iterate `chunks()`, then `close()`."""

    def __init__(self, status: int, url: str, headers: Mapping[str, str], raw: urllib3.HTTPResponse) -> None:
        self.status, self.url, self.headers, self._raw = status, url, headers, raw

    def chunks(self, size: int = 256 * 1024) -> Iterator[bytes]:
        """The body as it arrives; HttpError when the connection fails or the body is cut short."""
        try:
            while chunk := self._raw.read(size, decode_content=False):
                yield chunk
        except HTTPError as error:
            msg = f"{self.url}: {_reason(error)}"
            raise HttpError(msg) from None

    def abort(self) -> None:
        """Cut the connection now, from any thread: a read blocked on it ends with HttpError.
        For a deadline over the whole body, which the idle timeout cannot give (a trickle of
        one byte every few seconds never lets a read time out)."""
        connection = getattr(self._raw, "_connection", None)
        sock = getattr(connection, "sock", None)
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """A body read to its end returns the connection to the pool; any other is dropped."""
        if self._raw.isclosed() or self._raw.length_remaining == 0:
            self._raw.release_conn()
        else:
            self._raw.close()
            self._raw.release_conn()


def _read(response: urllib3.HTTPResponse, url: str, deadline: float, max_bytes: int) -> bytes:
    """The whole (decoded) body, within the deadline and the size limit."""
    chunks: list[bytes] = []
    total = 0
    try:
        while chunk := response.read(_CHUNK, decode_content=True):
            total += len(chunk)
            if total > max_bytes:
                msg = f"{url}: answer larger than {max_bytes} bytes"
                raise HttpError(msg)
            if time.monotonic() > deadline:
                msg = f"{url}: timed out reading the answer"
                raise HttpError(msg)
            chunks.append(chunk)
    except HTTPError as error:
        msg = f"{url}: {_reason(error)}"
        raise HttpError(msg) from None
    return b"".join(chunks)


_TIMEOUTS: Final = ((ConnectTimeoutError, "timed out connecting"),
                    (ReadTimeoutError, "timed out waiting for the answer"))


def _reason(error: HTTPError) -> str:
    """urllib3's messages name internal objects; ours say what happened, in a few words."""
    if isinstance(error, NewConnectionError):  # a subclass of ConnectTimeoutError in 1.26
        return "cannot connect: " + str(error).rpartition(": ")[2]
    for kind, reason in _TIMEOUTS:
        if isinstance(error, kind):
            return reason
    if isinstance(error, SSLError):
        return f"TLS failed: {error}"
    if isinstance(error, ProtocolError):
        detail = error.args[1] if len(error.args) > 1 else error
        if "IncompleteRead" in type(detail).__name__ or "IncompleteRead" in str(detail):
            return f"connection closed before the end of the answer ({detail})"
        return "connection broken: " + " ".join(str(detail).split())[:100]
    return str(error) or type(error).__name__
