"""Generated pages held in memory, each with its headers made once per version of its file.

The index is regenerated behind our back (by the watcher, or by `pypi-insiders generate` in
another process), so a cached page is trusted only while the file's stat still matches; one
`stat` per request is far cheaper than reading and hashing the page again.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Final

from packaging.utils import NormalizedName

from pypi_insiders.web.finish import validators
from pypi_insiders.web.response import Headers, Response
from pypi_insiders.web.safe_paths import ABSENT

PAGE_CACHE_CONTROL: Final = "max-age=30, public"
# Every page of 2,000 projects. Shared out between the processes of `[server] processes`: each
# keeps its own, of the same hot pages, and the kernel's page cache holds the files for all.
_PAGE_CACHE_BYTES: Final = 24 * 1024 * 1024
_LOAD_STRIPES: Final = 64  # locks pages are loaded under (page_cache.PageCache._loading_lock)
_ENTRY_OVERHEAD: Final = 1024  # the Page object, its header lists and the dict slot, roughly
GZIP_FROM: Final = 1024  # smaller pages gain too little from compression to pay for it


@dataclass(frozen=True)
class Page:
    """A page's answer made once, valid while the file's stat is unchanged: a request for it
    builds nothing (`finish.py` makes it private for a caller with credentials)."""

    identity: tuple[int, int, int]  # (st_ino, st_size, st_mtime_ns)
    shared: Response = field(repr=False)  # for anyone
    own: Response = field(repr=False)  # for a caller who sent credentials

    @property
    def body(self) -> bytes:
        body = self.shared.body
        return body if isinstance(body, bytes) else b""  # always bytes here


def _identity(stat: os.stat_result) -> tuple[int, int, int]:
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


_Key = tuple[str, str, bool]  # (file, content type, gzip)


def limit_for(processes: int) -> int:
    """Each process's share of the page cache's bound (at least 4 MB: a large root list fits)."""
    return max(_PAGE_CACHE_BYTES // max(processes, 1), 4 * 1024 * 1024)


class PageCache:
    """Generated pages by (file, content type, gzip), bounded in bytes, oldest evicted first.

    Pip and uv ask for gzip: a page is compressed once per version of its file and kept that
    way, so a 1 MB root list or a project with thousands of files crosses the network as a
    tenth of that, at no cost per request.
    """

    def __init__(self, limit_bytes: int = _PAGE_CACHE_BYTES) -> None:
        self._pages: OrderedDict[_Key, Page] = OrderedDict()
        self._bytes = 0
        self._limit = limit_bytes
        self._lock = threading.Lock()
        self._stripes = tuple(threading.Lock() for _ in range(_LOAD_STRIPES))
        self.loads = 0  # pages read from disk (and compressed), for tests and status lines

    @property
    def size(self) -> int:
        """Bytes held, by the same rough measure the bound uses."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._pages)

    def get(self, file: str, content_type: str, vary: bool, *, gzipped: bool = False,
            project: NormalizedName | None = None) -> Page | None:
        """The page in `file`, reloaded when it changed on disk; None when it does not exist.

        `gzipped`: the client accepts gzip; the page comes compressed when that pays.
        `project`: whose page it is, for the access log (a file always holds the same one's).
        """
        key = (file, content_type, gzipped)
        try:
            stat = os.stat(file)  # noqa: PTH116 - str paths keep the hot path cheap
        except OSError as error:
            if error.errno not in ABSENT:
                raise
            self._drop(key)
            return None
        if gzipped and stat.st_size < GZIP_FROM:
            key = (file, content_type, False)  # served as is: one cache entry, not two alike
        page = self._pages.get(key)
        if page is not None and page.identity == _identity(stat):
            return page
        with self._loading_lock(key):  # one thread reads (and compresses) it, the others wait
            page = self._pages.get(key)
            if page is not None and page.identity == _identity(stat):
                return page
            return self._load(key, vary, project)

    def _loading_lock(self, key: _Key) -> threading.Lock:
        """The lock a page is loaded under: a 1 MB root list is compressed once, not once per
        thread asking for it at the same moment (right after each regeneration). Striped: a
        fixed set, so memory does not grow with the pages, two pages rarely share one."""
        return self._stripes[hash(key) % len(self._stripes)]

    def _load(self, key: _Key, vary: bool, project: NormalizedName | None) -> Page | None:
        try:
            with open(key[0], "rb") as stream:  # noqa: PTH123 - str paths keep the hot path cheap
                stat = os.fstat(stream.fileno())
                body = stream.read()
        except OSError as error:
            if error.errno not in ABSENT:
                raise
            self._drop(key)
            return None
        self.loads += 1
        encoding: Headers = []
        if key[2] and len(body) >= GZIP_FROM:
            body = gzip.compress(body, compresslevel=6, mtime=0)  # mtime=0: same bytes, same tag
            encoding = [("Content-Encoding", "gzip")]
        # One tag per representation: the same HTML as text/html and as the PEP 691 type differ,
        # and so do its identity and gzip encodings (the compressed bytes are hashed).
        etag = '"' + hashlib.blake2b(body + key[1].encode(), digest_size=12).hexdigest() + '"'
        mtime = int(stat.st_mtime)
        vary_on = "Accept, Accept-Encoding" if vary else "Accept-Encoding"
        headers = [("Content-Type", key[1]), ("Content-Length", str(len(body))), *encoding,
                   *validators(etag, mtime, PAGE_CACHE_CONTROL), ("Vary", vary_on)]
        shared = Response("200 OK", headers, body, etag=etag, mtime=mtime, project=project)
        page = Page(_identity(stat), shared, replace(shared, private=True))
        with self._lock:
            old = self._pages.pop(key, None)
            self._bytes += _cost(page) - (_cost(old) if old else 0)
            self._pages[key] = page
            while self._bytes > self._limit and len(self._pages) > 1:
                _key, evicted = self._pages.popitem(last=False)
                self._bytes -= _cost(evicted)
        return page

    def _drop(self, key: _Key) -> None:
        with self._lock:
            old = self._pages.pop(key, None)
            if old is not None:
                self._bytes -= _cost(old)


def _cost(page: Page) -> int:
    return len(page.body) + _ENTRY_OVERHEAD
