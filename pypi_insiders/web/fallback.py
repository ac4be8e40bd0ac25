"""What a name the store does not hold gets: a redirect, a proxied page, the mirror, or a 404.

This is the dependency-confusion guard. A name the store holds is answered by the app from
the generated pages and never reaches this module; a name that was ever local is *pinned*
(the generator records it) and gets a 404 here rather than a public project of the same
name. Only a name that was never ours goes upstream, in the way `upstream.fallback` says
(`"mirror"`: `web.mirror_route` answers, with this module's `is_local` as its first check).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

from packaging.utils import NormalizedName

from pypi_insiders.config import UpstreamConfig
from pypi_insiders.http_client import HttpClient, HttpError, display_url
from pypi_insiders.http_client import Response as Upstream
from pypi_insiders.index.pins import Pins, is_local
from pypi_insiders.simple_api import HTML_MEDIA_TYPE, V1_HTML_MEDIA_TYPE
from pypi_insiders.web.negotiate import Format
from pypi_insiders.web.relay import InvalidPageError, html_page, json_page
from pypi_insiders.web.response import Response, plain

log = logging.getLogger(__name__)

_MAX_PAGE = 64 * 1024 * 1024
_CACHE_ENTRIES = 4096
_CACHE_BYTES = 128 * 1024 * 1024
_GATES = 64
_RETRY_AFTER = 5.0  # seconds after a failed fetch before the same page is asked for again

def _accept_header(formats: tuple[Format, ...]) -> str:
    """Ask upstream for what the client accepts, in the client's order."""
    qualities = ("1.0", "0.5", "0.1")
    return ", ".join(f"{f.media_type};q={q}" for f, q in zip(formats, qualities, strict=False))


class _Entry(NamedTuple):
    fetched: float
    answer: Response


class UpstreamError(Exception):
    """Upstream failed (down, slow, 5xx, garbage): serve the stale copy or a 502."""


class Fallback:
    """The policy for names that are not local, with the proxy's page cache."""

    def __init__(self, settings: UpstreamConfig, pins: Pins, *local_roots: Path,
                 client: HttpClient | None = None) -> None:
        """`local_roots`: directories where a subdirectory named like a project makes it local."""
        self.settings = settings
        self.client = client or HttpClient()
        self.pins = pins
        self.local_roots = [str(root) for root in local_roots]
        self._cache: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._cache_bytes = 0
        self._lock = threading.Lock()
        # Striped locks: concurrent misses for one page make one upstream request, in bounded memory.
        self._gates = tuple(threading.Lock() for _ in range(_GATES))
        self._failures: dict[tuple[str, str], tuple[float, str]] = {}

    def close(self) -> None:
        """Closes the pooled upstream connections; a request after this opens new ones."""
        self.client.close()

    def reconfigure(self, settings: UpstreamConfig) -> None:
        """A new URL makes every cached page meaningless; a new TTL or timeout does not."""
        if settings.url != self.settings.url:
            with self._lock:
                self._cache.clear()
                self._cache_bytes = 0
                self._failures.clear()
        self.settings = settings

    def is_local(self, name: NormalizedName) -> bool:
        """Pinned, or on its way: files in the store or a page half written are local already."""
        return is_local(name, self.pins, self.local_roots)

    def answer(self, name: NormalizedName, formats: tuple[Format, ...], query: str) -> Response:
        settings = self.settings
        if self.is_local(name):
            return plain("404 Not Found", "project has no files here (pinned to local)")
        if settings.fallback == "off":
            return plain("404 Not Found", "project not found (upstream fallback is off)")
        if settings.url is None:
            return plain("404 Not Found", "project not found (no upstream index configured)")
        if settings.fallback == "redirect":
            return self.redirect(name, query)
        if settings.fallback == "mirror":  # the app sends mirrored names to web.mirror_route
            return plain("404 Not Found", "project not found (the mirror is not set up)")
        return self._proxy(name, formats, settings)

    def redirect(self, name: NormalizedName, query: str) -> Response:
        """To upstream's page of `name` (never to a local name: callers checked `is_local`)."""
        if self.settings.url is None:
            return plain("404 Not Found", "project not found (no upstream index configured)")
        target = display_url(self.settings.url) + name + "/" + (f"?{query}" if query else "")
        return plain("302 Found", f"not held here; see {target}", [("Location", target)])

    def _proxy(self, name: NormalizedName, formats: tuple[Format, ...], settings: UpstreamConfig) -> Response:
        key = (name, ",".join(f.media_type for f in formats))
        # One upstream request per page at a time; the others wait and take its result.
        with self._gates[hash(key) % _GATES]:
            entry = self._cache.get(key)
            now = time.monotonic()
            if entry is not None and now - entry.fetched < _ttl(entry.answer, settings):
                return entry.answer
            failed = self._failures.get(key)
            if failed is not None and now - failed[0] < _RETRY_AFTER:
                # Requests queued behind a hanging upstream must not each wait out the timeout.
                return entry.answer if entry else _bad_gateway(failed[1])
            try:
                answer = self._fetch(name, formats, settings)
            except UpstreamError as error:
                log.warning("upstream failed for %s: %s%s", name, error,
                            "; serving the stale copy" if entry else "", extra={"PROJECT": name})
                if len(self._failures) >= _CACHE_ENTRIES:
                    self._failures.clear()
                self._failures[key] = (time.monotonic(), str(error))
                return entry.answer if entry else _bad_gateway(str(error))
            self._failures.pop(key, None)
            self._remember(key, answer)
            return answer

    def _remember(self, key: tuple[str, str], answer: Response) -> None:
        """Oldest first out: a bounded cache, not an LRU, because hits must stay cheap."""
        with self._lock:
            old = self._cache.pop(key, None)
            self._cache_bytes += _size(answer) - (_size(old.answer) if old else 0)
            self._cache[key] = _Entry(time.monotonic(), answer)
            while self._cache and (len(self._cache) > _CACHE_ENTRIES or self._cache_bytes > _CACHE_BYTES):
                _key, evicted = self._cache.popitem(last=False)
                self._cache_bytes -= _size(evicted.answer)

    def _fetch(self, name: NormalizedName, formats: tuple[Format, ...], settings: UpstreamConfig) -> Response:
        assert settings.url is not None  # noqa: S101 - answer() checked it
        log.debug("fetching %s from upstream", name, extra={"PROJECT": name})
        try:
            response = self.client.get(f"{settings.url}{name}/", headers={"Accept": _accept_header(formats)},
                                       timeout=settings.timeout, max_bytes=_MAX_PAGE)
        except HttpError as error:
            raise UpstreamError(str(error)) from None
        if response.status == 404:
            return plain("404 Not Found", "project not found here or upstream")
        if response.status != 200:
            msg = f"{response.url} answered {response.status}"
            raise UpstreamError(msg)
        try:
            return _relay(response)
        except InvalidPageError as error:
            msg = f"{response.url}: {error}"
            raise UpstreamError(msg) from None


def _relay(response: Upstream) -> Response:
    """Upstream's page with absolute file URLs, so clients download from upstream directly."""
    media = response.media_type
    if media.endswith("+json"):
        text = json_page(response.body, response.url)
    elif media in (HTML_MEDIA_TYPE, V1_HTML_MEDIA_TYPE):
        text = html_page(response.body, response.url, response.charset, framed=response.framed)
        media += "; charset=utf-8" if media == HTML_MEDIA_TYPE else ""
    else:
        msg = f"not HTML or JSON: content type {media or 'missing'!r}"
        raise InvalidPageError(msg)
    data = text.encode()
    etag = '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'
    mtime = int(time.time())
    headers = [("Content-Type", media), ("Content-Length", str(len(data))), ("ETag", etag),
               ("Cache-Control", "max-age=60, public"), ("Vary", "Accept")]
    return Response("200 OK", headers, data, etag=etag, mtime=mtime)


def _ttl(answer: Response, settings: UpstreamConfig) -> float:
    """A 404 is kept briefly: a project published upstream should show up within a minute."""
    return settings.cache_ttl if answer.status.startswith("200") else min(settings.cache_ttl, 60.0)


def _bad_gateway(reason: str) -> Response:
    return plain("502 Bad Gateway", f"upstream index failed: {reason}")


def _size(answer: Response) -> int:
    body = answer.body if isinstance(answer.body, bytes) else b""  # always bytes here
    return len(body) + 256  # headers and bookkeeping, roughly
