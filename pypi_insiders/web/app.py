"""The WSGI app: routes requests to the generated index, the store, upstream, status and upload.

Everything it serves was generated beforehand (see the on-disk contract in `index/layout.py`), so
a request is a route, a negotiated format, a `stat`, and bytes already in memory. No logging
and no allocation beyond that on the hot path: a project page must cost little more than
waitress itself.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, BinaryIO, Protocol

from packaging.utils import canonicalize_name

from pypi_insiders.config import Config
from pypi_insiders.errors import InsidersError, InvalidDistributionError
from pypi_insiders.index.layout import METADATA_SUFFIX, PACKAGES_URL, SIMPLE_URL, IndexLayout
from pypi_insiders.index.pins import Pins, pins_path
from pypi_insiders.store import Store, parse_filename
from pypi_insiders.web import page_cache, upload
from pypi_insiders.web.fallback import Answer, Fallback, text_answer
from pypi_insiders.web.negotiate import HTML, OFFERED_TEXT, Format, Negotiator, accepts_gzip

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
Response = tuple[str, page_cache.Headers, Iterable[bytes]]

_NORMALIZED = re.compile(r"[a-z0-9]+(?:[-][a-z0-9]+)*")
_VALID_NAME = re.compile(r"[a-z0-9]|[a-z0-9][a-z0-9._-]*[a-z0-9]", re.IGNORECASE)
_READ_ONLY = "GET, HEAD"
_READ_METHODS = frozenset({"GET", "HEAD"})
_UPLOAD_PATHS = frozenset({"/", "/legacy", "/legacy/"})
_BINARY = "application/octet-stream"
_CHUNK = 256 * 1024


def _plain(status: str, message: str, extra: page_cache.Headers | None = None) -> Response:
    answer = text_answer(status, message, extra)
    return answer.status, answer.headers, [answer.body]


def _not_generated() -> Response:
    return _plain("503 Service Unavailable", "the index has not been generated yet", [("Retry-After", "5")])


def _redirect(location: str) -> Response:
    return _plain("301 Moved Permanently", f"moved to {location}", [("Location", location)])


class StatusReport(Protocol):
    """What `/status` shows; the fetch stage provides it (`fetch.status`), passed in by the service."""

    def collect(self, config: Config) -> dict[str, Any]: ...

    def render_html(self, data: dict[str, Any]) -> str: ...


@dataclass(frozen=True)
class _Live:
    """What a reload changes, swapped as one object: a request reads one snapshot from start to end."""

    config: Config
    root_page: str
    simple: str
    store_root: str
    metadata_root: str
    uploads: upload.Uploads | None  # None while uploads are disabled


class IndexApp:
    """Routes; the state it needs (config, store, caches) is passed in, never global."""

    def __init__(self, config: Config, store: Store, fallback: Fallback, *,
                 pages: page_cache.PageCache | None = None, negotiator: Negotiator | None = None,
                 status: StatusReport | None = None) -> None:
        self.store = store
        self.status = status
        self.fallback = fallback
        self.pages = pages if pages is not None else page_cache.PageCache()  # an empty cache is falsy
        self.negotiator = negotiator or Negotiator()
        self.reconfigure(config)

    def reconfigure(self, config: Config) -> None:
        """Applied live on SIGHUP: upstream, fallback and upload settings (paths need a restart)."""
        self.fallback.reconfigure(config.upstream)
        layout = IndexLayout(config.paths.index)
        self._live = _Live(config, str(layout.landing_page), layout.simple_prefix(),
                           os.path.realpath(self.store.root), os.path.realpath(layout.packages),
                           upload.Uploads(config, self.store) if config.upload.enabled else None)

    @property
    def config(self) -> Config:
        return self._live.config

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path: str = environ.get("PATH_INFO") or "/"
        if method in _READ_METHODS:
            status, headers, body = self._read(environ, path)
            if method == "HEAD":
                if hasattr(body, "close"):
                    body.close()
                body = ()
        elif method == "POST" and path in _UPLOAD_PATHS:
            status, headers, body = self._upload(environ)
        else:
            allow = "GET, HEAD, POST" if path == "/" else "POST" if path in _UPLOAD_PATHS else _READ_ONLY
            status, headers, body = _plain("405 Method Not Allowed", f"{method} is not allowed here",
                                           [("Allow", allow)])
        start_response(status, headers)
        return body

    # ------------------------------------------------------------------ read-only routes

    def _read(self, environ: Environ, path: str) -> Response:  # noqa: PLR0911 - a routing table
        if path.startswith(SIMPLE_URL):
            return self._simple_page(environ, path[8:])
        if path.startswith(PACKAGES_URL):
            return self._package_file(environ, path[len(PACKAGES_URL):])
        if path == "/":
            return self._page(environ, self._live.root_page, HTML, vary=False) or _not_generated()
        if path == "/simple":
            return _redirect(_with_query("simple/", environ))
        if path in ("/status", "/status.json"):
            return self._status(path.endswith(".json"))
        if path in _UPLOAD_PATHS:
            return _plain("405 Method Not Allowed", "the upload API takes POST", [("Allow", "POST")])
        return _plain("404 Not Found", "not found")

    def _simple_page(self, environ: Environ, rest: str) -> Response:
        formats = self.negotiator.choose(environ.get("HTTP_ACCEPT", ""), environ.get("QUERY_STRING", ""))
        if not formats:
            return _plain("406 Not Acceptable", f"acceptable types are: {OFFERED_TEXT}",
                          [("Vary", "Accept")])
        fmt = formats[0]
        if not rest:
            root = f"{self._live.simple}index.{fmt.suffix}"
            return self._page(environ, root, fmt, vary=True) or _not_generated()
        name, slash, tail = rest.partition("/")
        if tail or not _NORMALIZED.fullmatch(name):
            return self._unnormalized(environ, name, slash, tail)
        if not slash:
            return _redirect(_with_query(f"{name}/", environ))
        found = self._page(environ, f"{self._live.simple}{name}/index.{fmt.suffix}", fmt, vary=True)
        if found is not None:
            return found
        return self._answer(environ, self.fallback.answer(canonicalize_name(name), formats,
                                                          environ.get("QUERY_STRING", "")))

    def _unnormalized(self, environ: Environ, name: str, slash: str, tail: str) -> Response:
        """A valid name spelled otherwise moves to its normalized URL; anything else is a 404."""
        if tail or not _VALID_NAME.fullmatch(name):
            return _plain("404 Not Found", "not a project name")
        target = f"{canonicalize_name(name)}/"
        return _redirect(_with_query(f"../{target}" if slash else target, environ))

    def _page(self, environ: Environ, file: str, fmt: Format, *, vary: bool) -> Response | None:
        page = self.pages.get(file, fmt.content_type, vary,
                              gzipped=accepts_gzip(str(environ.get("HTTP_ACCEPT_ENCODING", ""))))
        if page is None:
            return None
        if environ.get("HTTP_IF_NONE_MATCH") or environ.get("HTTP_IF_MODIFIED_SINCE"):  # noqa: SIM102
            if page_cache.not_modified(environ, page.etag, page.mtime):
                return "304 Not Modified", page.not_modified, ()
        return "200 OK", page.headers, (page.body,)

    def _answer(self, environ: Environ, answer: Answer) -> Response:
        if answer.etag and page_cache.not_modified(environ, answer.etag, answer.mtime):
            kept = [(k, v) for k, v in answer.headers if k not in ("Content-Type", "Content-Length")]
            return "304 Not Modified", kept, ()
        return answer.status, answer.headers, (answer.body,)

    def _package_file(self, environ: Environ, relpath: str) -> Response:
        if relpath.endswith(METADATA_SUFFIX):
            path = page_cache.resolve_inside(self._live.metadata_root, relpath)
        else:
            path = page_cache.resolve_inside(self._live.store_root, relpath)
            if path is not None and not _is_distribution(path):
                path = None
        info = page_cache.served_file(path) if path else None
        if info is None:
            return _plain("404 Not Found", "no such file")
        common = page_cache.validators(info.etag, info.mtime, page_cache.FILE_CACHE_CONTROL)
        if page_cache.not_modified(environ, info.etag, info.mtime):
            return "304 Not Modified", common, ()
        headers = [("Content-Type", _BINARY), ("Content-Length", str(info.size)), *common]
        if environ["REQUEST_METHOD"] == "HEAD":
            return "200 OK", headers, ()
        try:
            stream = open(info.path, "rb")  # noqa: SIM115,PTH123 - closed by the server
        except OSError:
            return _plain("404 Not Found", "no such file")
        wrapper = environ.get("wsgi.file_wrapper")
        body: Iterable[bytes] = wrapper(stream, _CHUNK) if wrapper else _chunks(stream)
        return "200 OK", headers, body

    # ------------------------------------------------------------------ other routes

    def _status(self, as_json: bool) -> Response:
        if self.status is None:
            return _plain("404 Not Found", "no status here")
        try:
            data = self.status.collect(self.config)
        except InsidersError as error:
            return _plain("503 Service Unavailable", f"status not available: {error}")
        if as_json:
            body, content_type = json.dumps(data, indent=1, default=str).encode(), "application/json"
        else:
            body, content_type = self.status.render_html(data).encode(), "text/html; charset=utf-8"
        return "200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body))),
                          ("Cache-Control", "no-cache")], (body,)

    def _upload(self, environ: Environ) -> Response:
        uploads = self._live.uploads
        if uploads is None:
            return _plain("403 uploads are disabled", "uploads are disabled")
        code, message = uploads.handle(environ)
        extra = [("WWW-Authenticate", 'Basic realm="pypi-insiders"')] if code == 401 else []
        return _plain(f"{code} {_phrase(code, message if code >= 400 else '')}", message, extra)


_REASON_MAX = 200


def _phrase(code: int, reason: str = "") -> str:
    """A refusal's reason as the reason phrase, the way the public index does it: twine shows
    only the status line unless --verbose. Made one printable ASCII line (a header may carry
    nothing else); the standard phrase when nothing is left.
    """
    text = "".join(c if " " <= c <= "~" else " " for c in reason)
    text = " ".join(text.split())[:_REASON_MAX]
    if text:
        return text
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Unknown"


def _with_query(location: str, environ: Environ) -> str:
    query = environ.get("QUERY_STRING", "")
    return f"{location}?{query}" if query else location


def _is_distribution(path: str) -> bool:
    """Only distributions are published; any other file that happens to be in the store is not."""
    try:
        parse_filename(os.path.basename(path))  # noqa: PTH119
    except InvalidDistributionError:
        return False
    return True


def _chunks(stream: BinaryIO) -> Iterable[bytes]:
    with stream:
        while chunk := stream.read(_CHUNK):
            yield chunk


def make_app(config: Config, store: Store | None = None, *, fallback: Fallback | None = None,
             pages: page_cache.PageCache | None = None, status: StatusReport | None = None) -> IndexApp:
    """The app for one config; the service keeps it to call `reconfigure` on SIGHUP."""
    store = store or Store(config.paths.store)
    fallback = fallback or Fallback(config.upstream, Pins(pins_path(config.paths.state)),
                                    config.paths.store, IndexLayout(config.paths.index).simple)
    return IndexApp(config, store, fallback, pages=pages, status=status)

