"""`/packages/...`: a distribution from the store, or a wheel's core metadata, to a caller who may read it.

A file's project, from its name, decides before anything is looked up, so nobody learns whether
a file exists without being allowed to read it. With nginx in front (`sendfile.py`), the answer
names the file and nginx sends the bytes; otherwise waitress streams them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from packaging.utils import NormalizedName

from pypi_insiders.errors import InvalidDistributionError
from pypi_insiders.index.layout import METADATA_SUFFIX
from pypi_insiders.store import parse_filename
from pypi_insiders.web import access, access_log, page_cache, sendfile
from pypi_insiders.web.access import Policy, View
from pypi_insiders.web.responses import CHUNK, Response, chunks, plain

Environ = dict[str, Any]
_BINARY = "application/octet-stream"


class PublishedFiles:
    """The two trees files are served from; made again on reload with the rest of the snapshot."""

    def __init__(self, store_root: str, metadata_root: str, policy: Policy) -> None:
        self.store_root = os.path.realpath(store_root)
        self.metadata_root = os.path.realpath(metadata_root)
        self.policy = policy

    def answer(self, environ: Environ, relpath: str, view: View) -> Response:
        project = _project_of(relpath.removesuffix(METADATA_SUFFIX))
        environ[access_log.FILE] = relpath
        if project is not None:
            environ[access_log.PROJECT] = project
        refused = None if view.read.everything else self._refused(project, view)
        if refused is not None:
            return refused
        found = self._locate(relpath)
        if found is None:
            return plain("404 Not Found", "no such file")
        info, internal = found
        if view.private:
            common = [*page_cache.validators(info.etag, info.mtime, page_cache.PRIVATE_FILE_CACHE_CONTROL),
                      access.VARY_AUTH]
        else:
            common = page_cache.validators(info.etag, info.mtime, page_cache.FILE_CACHE_CONTROL)
        if page_cache.not_modified(environ, info.etag, info.mtime):
            return "304 Not Modified", common, ()
        return _send_file(environ, info, internal, common)

    def _refused(self, project: NormalizedName | None, view: View) -> Response | None:
        if project is None:
            return plain("404 Not Found", "no such file")
        if view.read.covers(project):
            return None
        answer = self.policy.refuse(view)
        return answer.status, answer.headers, (answer.body,)

    def _locate(self, relpath: str) -> tuple[page_cache.ServedFile, str] | None:
        """A published file (a distribution in the store, or metadata) and its internal URL for nginx."""
        if relpath.endswith(METADATA_SUFFIX):
            root, prefix = self.metadata_root, sendfile.METADATA_URL
            path = page_cache.resolve_inside(root, relpath)
        else:
            root, prefix = self.store_root, sendfile.STORE_URL
            path = page_cache.resolve_inside(root, relpath)
            if path is not None and not _is_distribution(path):
                path = None
        info = page_cache.served_file(path) if path else None
        return None if info is None else (info, sendfile.target(prefix, root, info.path))


def _send_file(environ: Environ, info: page_cache.ServedFile, internal: str,
               common: page_cache.Headers) -> Response:
    """The bytes of a file the caller may read, or only its name for nginx in front to send."""
    if sendfile.wanted(environ):
        environ[access_log.BYTES] = info.size
        return "200 OK", [("Content-Type", _BINARY), ("Content-Length", "0"),
                          (sendfile.HEADER, internal), *common], ()
    headers = [("Content-Type", _BINARY), ("Content-Length", str(info.size)), *common]
    if environ["REQUEST_METHOD"] == "HEAD":
        return "200 OK", headers, ()
    try:
        stream = open(info.path, "rb")  # noqa: SIM115,PTH123 - closed by the server
    except OSError:
        return plain("404 Not Found", "no such file")
    wrapper = environ.get("wsgi.file_wrapper")
    body: Iterable[bytes] = wrapper(stream, CHUNK) if wrapper else chunks(stream)
    return "200 OK", headers, body


def _project_of(relpath: str) -> NormalizedName | None:
    """The project a distribution belongs to, by its filename (where it lies in the store is free)."""
    try:
        return parse_filename(os.path.basename(relpath)).project  # noqa: PTH119
    except InvalidDistributionError:
        return None


def _is_distribution(path: str) -> bool:
    """Only distributions are published; any other file that happens to be in the store is not."""
    try:
        parse_filename(os.path.basename(path))  # noqa: PTH119
    except InvalidDistributionError:
        return False
    return True
