"""`/packages/...`: a distribution from the store, or a wheel's core metadata, to a caller who may read it.

A file's project, from its name, decides before anything is looked up, so nobody learns whether
a file exists without being allowed to read it. With nginx in front (`sendfile.py`), the answer
names the file and nginx sends the bytes; otherwise waitress streams them (`finish.py` opens
the file, only when its bytes are sent).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from packaging.utils import NormalizedName

from pypi_insiders.errors import InvalidDistributionError
from pypi_insiders.index.layout import METADATA_SUFFIX
from pypi_insiders.store import parse_filename
from pypi_insiders.web import sendfile
from pypi_insiders.web.access import Policy, View
from pypi_insiders.web.finish import validators
from pypi_insiders.web.response import FileBody, Response, plain
from pypi_insiders.web.safe_paths import ServedFile, resolve_inside, served_file

# A published file never changes (a filename is never reused): cached for a year. An answer to
# a caller with credentials is made private by `finish.one_caller`.
FILE_CACHE_CONTROL: Final = "max-age=31536000, public, immutable"
_BINARY: Final = "application/octet-stream"


class PublishedFiles:
    """The two trees files are served from; made again on reload with the rest of the snapshot."""

    def __init__(self, store_root: str, metadata_root: str, policy: Policy) -> None:
        self.store_root = os.path.realpath(store_root)
        self.metadata_root = os.path.realpath(metadata_root)
        self.policy = policy

    def answer(self, environ: Mapping[str, Any], relpath: str, view: View) -> Response:
        project = _project_of(relpath.removesuffix(METADATA_SUFFIX))
        refused = None if view.read.everything else self._refused(project, view)
        found = self._locate(relpath) if refused is None else None
        if found is None:
            return _about(refused or plain("404 Not Found", "no such file"), project, relpath)
        info, internal = found
        headers = validators(info.etag, info.mtime, FILE_CACHE_CONTROL)
        if sendfile.wanted(environ):  # nginx sends the bytes: an empty body, the log says their size
            headers = [("Content-Type", _BINARY), ("Content-Length", "0"), (sendfile.HEADER, internal),
                       *headers]
            body: bytes | FileBody = b""
            sends: int | None = info.size
        else:
            headers = [("Content-Type", _BINARY), ("Content-Length", str(info.size)), *headers]
            body, sends = FileBody(info.path, info.size), None
        return Response("200 OK", headers, body, etag=info.etag, mtime=info.mtime, private=view.private,
                        project=project, file=relpath, proxy_sends=sends)

    def _refused(self, project: NormalizedName | None, view: View) -> Response | None:
        if project is None:
            return plain("404 Not Found", "no such file")
        if view.read.covers(project):
            return None
        return self.policy.refuse(view)

    def _locate(self, relpath: str) -> tuple[ServedFile, str] | None:
        """A published file (a distribution in the store, or metadata) and its internal URL for nginx."""
        if relpath.endswith(METADATA_SUFFIX):
            root, prefix = self.metadata_root, sendfile.METADATA_URL
            path = resolve_inside(root, relpath)
        else:
            root, prefix = self.store_root, sendfile.STORE_URL
            path = resolve_inside(root, relpath)
            if path is not None and not _is_distribution(path):
                path = None
        info = served_file(path) if path else None
        return None if info is None else (info, sendfile.target(prefix, root, info.path))


def _about(answer: Response, project: NormalizedName | None, relpath: str) -> Response:
    """A refusal or a 404, with the file and its project for the access log."""
    return replace(answer, project=project, file=relpath)


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
