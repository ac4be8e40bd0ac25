"""Upstream pages for the mirror: kept on disk for every process, revalidated after `cache_ttl`,
served stale when upstream fails, never replaced by a page with an older serial.

A page on disk (`pages/<name>.json`) survives restarts and is shared by all worker processes;
one process refreshes it at a time (an flock per page), the others wait and read its result.
With `offline = true` nothing here opens a connection.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from packaging.utils import NormalizedName

from pypi_insiders.config import UpstreamConfig
from pypi_insiders.files import atomic_write, exclusive_lock
from pypi_insiders.http_client import HttpClient, HttpError, Response
from pypi_insiders.mirror.layout import MirrorLayout
from pypi_insiders.mirror.page import BadPageError, MirroredPage, from_bytes, from_html, from_json
from pypi_insiders.mirror.stats import MirrorStats
from pypi_insiders.simple_api import HTML_MEDIA_TYPE, V1_HTML_MEDIA_TYPE, V1_JSON_MEDIA_TYPE

log = logging.getLogger(__name__)

_ACCEPT: Final = f"{V1_JSON_MEDIA_TYPE}, {V1_HTML_MEDIA_TYPE};q=0.2, {HTML_MEDIA_TYPE};q=0.1"
_MAX_PAGE: Final = 64 * 1024 * 1024
_RETRY_AFTER: Final = 5.0  # seconds a failure is remembered: queued requests do not each wait it out
_MEMORY: Final = 1024  # parsed pages kept per process, checked against the file's stat


class PageNotFound(Exception):  # noqa: N818 - an answer, not a failure
    """Upstream has no such project (or, offline, we have no page of it)."""


class UpstreamFailed(Exception):  # noqa: N818
    """Upstream gave no usable page and we have none stored: a 502."""


@dataclass(frozen=True)
class Loaded:
    page: MirroredPage
    stale: bool  # upstream failed; this is the last good copy


class PageSource:
    def __init__(self, layout: MirrorLayout, settings: UpstreamConfig, client: HttpClient,
                 stats: MirrorStats) -> None:
        self.layout, self.settings, self.client, self.stats = layout, settings, client, stats
        self._memory: OrderedDict[NormalizedName, tuple[tuple[int, int, int], MirroredPage]] = OrderedDict()
        self._failures: dict[NormalizedName, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def stored(self, name: NormalizedName) -> MirroredPage | None:
        """The page on disk, if any; a damaged one counts as none."""
        path = self.layout.page(name)
        try:
            stat = os.stat(path)  # noqa: PTH116
        except FileNotFoundError:
            return None
        identity = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            kept = self._memory.get(name)
        if kept is not None and kept[0] == identity:
            return kept[1]
        try:
            page = from_bytes(path.read_bytes())
        except (OSError, BadPageError) as error:
            log.warning("ignoring the mirrored page of %s: %s", name, error, extra={"PROJECT": name})
            return None
        with self._lock:
            self._memory[name] = (identity, page)
            while len(self._memory) > _MEMORY:
                self._memory.popitem(last=False)
        return page

    def forget(self, name: NormalizedName, *, gone: bool = False) -> None:
        """Drop the stored page (the name became local, or it was purged). `gone`: no page of
        it will list its files again (upstream said 404, or it is local now), so the sweep
        drops them too; a page dropped for another reason (a new upstream URL) leaves its
        files, which the next page of that name may list again."""
        try:
            self.layout.page(name).unlink()
        except FileNotFoundError:
            gone = False  # nothing was mirrored (or it was marked already)
        if gone:
            with contextlib.suppress(OSError):
                self.layout.gone.mkdir(parents=True, exist_ok=True)
                self.layout.gone_mark(name).touch()
        with self._lock:
            self._memory.pop(name, None)

    def load(self, name: NormalizedName) -> Loaded:
        page = self.stored(name)
        if self.settings.offline:
            if page is None:
                msg = "not mirrored here (upstream.offline)"
                raise PageNotFound(msg)
            return Loaded(page, stale=False)
        if page is not None and self._fresh(page):
            return Loaded(page, stale=False)
        failed = self._failures.get(name)
        if failed is not None and time.monotonic() - failed[0] < _RETRY_AFTER:
            return self._stale(name, page, failed[1])
        self.layout.locks.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.layout.page_lock(name)):
            page = self.stored(name)  # another process may have refreshed it while we waited
            if page is not None and self._fresh(page):
                return Loaded(page, stale=False)
            try:
                fresh = self._fetch(name, page)
            except UpstreamFailed as error:
                if len(self._failures) >= _MEMORY:
                    self._failures.clear()  # bounded: a failure is worth remembering for seconds only
                self._failures[name] = (time.monotonic(), str(error))
                self.stats.error(str(error))
                return self._stale(name, page, str(error))
            except PageNotFound:
                if page is not None:
                    log.info("upstream no longer has %s: its mirrored page is dropped", name,
                             extra={"PROJECT": name, "RESULT": "removed"})
                    self.forget(name, gone=True)
                raise
            self._failures.pop(name, None)
            atomic_write(self.layout.page(name), fresh.to_bytes(), 0o644, durable=False)
            return Loaded(fresh, stale=False)

    def _fresh(self, page: MirroredPage) -> bool:
        return 0 <= time.time() - page.fetched_at < self.settings.cache_ttl

    def _stale(self, name: NormalizedName, page: MirroredPage | None, reason: str) -> Loaded:
        if page is None:
            raise UpstreamFailed(reason)
        self.stats.add(stale_pages=1)
        log.info("serving the stale page of %s: %s", name, reason,
                 extra={"PROJECT": name, "RESULT": "stale"})
        return Loaded(page, stale=True)

    def _fetch(self, name: NormalizedName, stored: MirroredPage | None) -> MirroredPage:
        assert self.settings.url is not None  # noqa: S101 - the route checked it
        headers = {"Accept": _ACCEPT}
        if stored is not None and stored.etag:
            headers["If-None-Match"] = stored.etag
        try:
            response = self.client.get(f"{self.settings.url}{name}/", headers=headers,
                                       timeout=self.settings.timeout, max_bytes=_MAX_PAGE)
        except HttpError as error:
            raise UpstreamFailed(str(error)) from None
        now = time.time()
        if response.status == 304 and stored is not None:
            return stored.touched(now)
        if response.status == 404:
            msg = "project not found here or upstream"
            raise PageNotFound(msg)
        if response.status != 200:
            msg = f"{response.url} answered {response.status}"
            raise UpstreamFailed(msg)
        page = _parse(name, response, now)
        if stored is not None and stored.last_serial is not None and page.last_serial is not None \
                and page.last_serial < stored.last_serial:
            msg = f"{response.url}: serial {page.last_serial} is older than the stored {stored.last_serial}"
            log.warning("%s; keeping the stored page", msg, extra={"PROJECT": name, "RESULT": "stale"})
            raise UpstreamFailed(msg)
        return page


def _parse(name: NormalizedName, response: Response, now: float) -> MirroredPage:
    media = response.media_type
    try:
        if media.endswith("+json"):
            page = from_json(name, response.body, response.url, now)
        elif media in (HTML_MEDIA_TYPE, V1_HTML_MEDIA_TYPE):
            page = from_html(name, response.body.decode(response.charset), response.url, now)
        else:
            msg = f"not HTML or JSON: content type {media or 'missing'!r}"
            raise BadPageError(msg)
    except (BadPageError, UnicodeDecodeError, LookupError) as error:
        msg = f"{response.url}: {error}"
        raise UpstreamFailed(msg) from None
    serial = response.headers.get("X-PyPI-Last-Serial", "")
    return MirroredPage(name, page.files, now, response.headers.get("ETag", ""),
                        int(serial) if serial.isdigit() else None)
