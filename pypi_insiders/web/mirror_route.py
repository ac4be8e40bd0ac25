"""The mirror's two routes: project pages of mirrored names, and `/mirror/<name>/<sha256>/<file>`.

Both check the same things in the same order before anything is read or fetched: the name is
not local (the dependency-confusion rule: a local or pinned name never reaches upstream, even
when a stale mirrored page of it is on disk), not refused by `deny`/`allow` (403, no upstream
request), and the caller may use the mirror (`upstream.anonymous`). Files are then served from
disk (through nginx's `X-Accel-Redirect` when it stands in front) or fetched once, verified
while streamed (`mirror.download`).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Final

from packaging.utils import NormalizedName

from pypi_insiders.mirror import render
from pypi_insiders.mirror.layout import METADATA, is_distribution, is_sha256
from pypi_insiders.mirror.mirror import Mirror
from pypi_insiders.mirror.page import MirroredFile
from pypi_insiders.mirror.pages import Loaded, PageNotFound, UpstreamFailed
from pypi_insiders.mirror.transfer import FetchFailed, Transfer
from pypi_insiders.web import page_cache, sendfile
from pypi_insiders.web.access import View
from pypi_insiders.web.fallback import Fallback
from pypi_insiders.web.file_route import FILE_CACHE_CONTROL
from pypi_insiders.web.finish import not_modified
from pypi_insiders.web.negotiate import Format, accepts_gzip
from pypi_insiders.web.response import FileBody, Response, challenge, plain

log = logging.getLogger(__name__)

Environ = dict[str, Any]
_NORMALIZED: Final = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_FRESH: Final = "max-age=60, public"
_BINARY: Final = "application/octet-stream"
_RENDERED_BYTES: Final = 16 * 1024 * 1024  # rendered pages kept per process
_FILE_HEADERS: Final = [("Content-Type", _BINARY), ("Cache-Control", FILE_CACHE_CONTROL)]


class MirrorRoutes:
    def __init__(self, mirror: Mirror, fallback: Fallback, anonymous: str) -> None:
        self.mirror, self.fallback, self.anonymous = mirror, fallback, anonymous
        self._rendered_pages: OrderedDict[tuple[object, ...], tuple[bytes, str, bool]] = OrderedDict()
        self._rendered_bytes = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ pages

    def page(self, environ: Environ, name: NormalizedName, formats: tuple[Format, ...], view: View,
             *, unpinned: bool = False) -> Response:
        refused = self._refused(name, view, unpinned=unpinned)
        if refused is not None:
            return refused
        if view.user is None and self.anonymous == "redirect":
            return self.fallback.redirect(name, environ.get("QUERY_STRING", ""))
        loaded = self._load(name)
        if not isinstance(loaded, Loaded):
            return loaded
        shown = self.mirror.visible(name, loaded.page.files)
        if len(shown) < len(loaded.page.files):
            log.debug("mirror page %s: %d of %d files hidden", name, len(loaded.page.files) - len(shown),
                      len(loaded.page.files), extra={"PROJECT": name})
        return self._rendered(environ, name, formats[0], shown, stale=loaded.stale, view=view,
                              by_caller=unpinned or self.anonymous != "mirror")

    def _refused(self, name: NormalizedName, view: View, *, unpinned: bool) -> Response | None:
        if not unpinned and self.fallback.is_local(name):
            self.mirror.pages.forget(name, gone=True)  # mirrored before it became ours: never shown again
            return plain("404 Not Found", "project has no files here (pinned to local)")
        reason = self.mirror.policy.refused(name)
        if reason is not None:
            log.info("mirror refused %s: %s", name, reason, extra={"PROJECT": name, "RESULT": "denied"})
            return plain("403 Forbidden", reason)
        if view.user is None and self.anonymous == "none":
            return challenge("authentication required to use the mirror")
        if self.mirror.settings.url is None:
            return plain("404 Not Found", "project not found (no upstream index configured)")
        return None

    def _load(self, name: NormalizedName) -> Loaded | Response:
        try:
            return self.mirror.pages.load(name)
        except PageNotFound as missing:
            return plain("404 Not Found", str(missing))
        except UpstreamFailed as error:
            log.warning("upstream failed for %s: %s", name, error, extra={"PROJECT": name})
            return plain("502 Bad Gateway", f"upstream index failed: {error}", [("Retry-After", "5")])

    def _rendered(self, environ: Environ, name: NormalizedName, fmt: Format, shown: list[MirroredFile],
                  *, stale: bool, view: View, by_caller: bool) -> Response:
        """`by_caller`: another caller could get another answer here (a local public project's
        readers get ours), so shared caches must key on Authorization."""
        gzipped = accepts_gzip(str(environ.get("HTTP_ACCEPT_ENCODING", "")))
        body, etag, compressed = self._encoded(name, fmt, tuple(shown), gzipped=gzipped)
        encoding = [("Content-Encoding", "gzip")] if compressed else []
        headers = [("Content-Type", fmt.content_type), ("Content-Length", str(len(body))), *encoding,
                   ("ETag", etag), ("Cache-Control", "no-cache" if stale else _FRESH),
                   ("Vary", "Accept, Accept-Encoding")]
        # mtime now: no Last-Modified is sent, so only If-None-Match makes a 304 (finish.py).
        return Response("200 OK", headers, body, etag=etag, mtime=int(time.time()),
                        private=view.private, vary_auth=by_caller)

    def _encoded(self, name: NormalizedName, fmt: Format, shown: tuple[MirroredFile, ...], *,
                 gzipped: bool) -> tuple[bytes, str, bool]:
        """The page's bytes, tag and whether gzipped: rendered and compressed once per set of
        files shown (the cooldown changes that set as time passes, so it is the key)."""
        key = (name, fmt.content_type, gzipped, shown)
        with self._lock:
            found = self._rendered_pages.get(key)
            if found is not None:
                self._rendered_pages.move_to_end(key)
                return found
        body = render.json_page(name, shown) if fmt.suffix == "json" else render.html_page(name, shown)
        compressed = gzipped and len(body) >= page_cache.GZIP_FROM
        if compressed:
            body = gzip.compress(body, compresslevel=6, mtime=0)
        etag = '"' + hashlib.blake2b(body + fmt.content_type.encode(), digest_size=12).hexdigest() + '"'
        with self._lock:
            self._rendered_pages[key] = (body, etag, compressed)
            self._rendered_bytes += len(body)
            while self._rendered_bytes > _RENDERED_BYTES and len(self._rendered_pages) > 1:
                _key, (old, _etag, _gz) = self._rendered_pages.popitem(last=False)
                self._rendered_bytes -= len(old)
        return body, etag, compressed

    # ------------------------------------------------------------------ files

    def file(self, environ: Environ, rest: str, view: View,  # noqa: PLR0911 - a check per line
             public: frozenset[NormalizedName]) -> Response:
        """`<name>/<sha256>/<filename>[.metadata]` below /mirror/."""
        parts = rest.split("/")
        if len(parts) != 3 or not _NORMALIZED.fullmatch(parts[0]) or not is_sha256(parts[1]):
            return plain("404 Not Found", "no such file")
        name, sha256, filename = NormalizedName(parts[0]), parts[1], parts[2]
        metadata = filename.endswith(METADATA)
        if not is_distribution(filename.removesuffix(METADATA)):
            return plain("404 Not Found", "no such file")
        unpinned = name in public and not view.read.covers(name)
        refused = self._refused(name, view, unpinned=unpinned)
        if refused is not None:
            return refused
        if view.user is None and self.anonymous != "mirror":
            return challenge("authentication required to use the mirror")
        loaded = self._load(name)
        if not isinstance(loaded, Loaded):
            return loaded
        item = loaded.page.find(sha256, filename.removesuffix(METADATA))
        if item is None:
            return plain("404 Not Found", "no such file (not on the project's page)")
        hidden = self.mirror.policy.hidden(name, item)
        if hidden is not None:
            result = "denied" if hidden.startswith("version") else "cooldown"
            log.info("mirror refused %s: %s", item.filename, hidden,
                     extra={"PROJECT": name, "FILE": item.filename, "RESULT": result})
            return plain("404 Not Found", f"no such file ({hidden})")
        if metadata:
            return self._metadata(environ, name, item, view)
        return self._distribution(environ, name, item, view)

    def _metadata(self, environ: Environ, name: NormalizedName, item: MirroredFile, view: View) -> Response:
        if item.core_metadata is None:
            return plain("404 Not Found", "no metadata file for this distribution")
        try:
            path = self.mirror.downloads.metadata(name, item)
        except FetchFailed as error:
            return _failed(error)
        return self._send(environ, path, f'"{item.core_metadata}"', view)

    def _distribution(self, environ: Environ, name: NormalizedName, item: MirroredFile,
                      view: View) -> Response:
        etag = f'"{item.sha256}"'
        if environ.get("HTTP_IF_NONE_MATCH") and not_modified(environ, etag, 2**62):
            # The URL names the hash: a client holding this tag holds these bytes.
            return Response("304 Not Modified", [("ETag", etag), *_FILE_HEADERS[1:]], private=view.private)
        path = self.mirror.downloads.on_disk(item)
        if path is None and self.mirror.settings.offline:
            return plain("404 Not Found", "no such file (not cached here, and upstream.offline is true)")
        if path is None and environ["REQUEST_METHOD"] == "HEAD" and item.size is not None \
                and self.mirror.downloads.too_large(item.size) is None:  # else the GET's 502
            return Response("200 OK", [*_FILE_HEADERS, ("Content-Length", str(item.size)), ("ETag", etag)],
                            private=view.private)
        if path is None:
            try:
                found = self.mirror.downloads.fetch(name, item)
            except FetchFailed as error:
                return _failed(error)
            if isinstance(found, Transfer):  # no `etag=`: finish must never 304 a started fetch
                headers = [*_FILE_HEADERS, ("Content-Length", str(found.size)), ("ETag", etag),
                           ("X-Accel-Buffering", "no")]
                return Response("200 OK", headers, found.body, private=view.private)
            path = found
        self.mirror.stats.add(hits=1)
        return self._send(environ, path, etag, view)

    def _send(self, environ: Environ, path: Path, etag: str, view: View) -> Response:
        try:
            stat = path.stat()
        except OSError:
            return plain("404 Not Found", "no such file")
        headers = [*_FILE_HEADERS, ("ETag", etag)]
        if sendfile.wanted(environ):  # nginx sends the bytes: an empty body, the log says their size
            internal = sendfile.target(sendfile.MIRROR_URL, str(self.mirror.layout.files), str(path))
            return Response("200 OK", [*headers, ("Content-Length", "0"), (sendfile.HEADER, internal)],
                            etag=etag, mtime=int(stat.st_mtime), private=view.private,
                            proxy_sends=stat.st_size)
        return Response("200 OK", [*headers, ("Content-Length", str(stat.st_size))],
                        FileBody(str(path), stat.st_size), etag=etag, mtime=int(stat.st_mtime),
                        private=view.private)


def _failed(error: FetchFailed) -> Response:
    return plain("502 Bad Gateway", f"upstream failed: {error}", [("Retry-After", "5")])


