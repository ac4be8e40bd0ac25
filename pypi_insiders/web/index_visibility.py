"""What the generated index lists, read from disk: for upload checks, and to answer an upload
only once its file is installable.

The upload puts a file into the store; the index service's watcher regenerates that project a
debounce later, in the parent process, while the upload may have landed in a forked worker that
has no generator (`[server] processes`). So nothing here waits on an in-process event: it reads
the generated tree itself, at the paths `index/layout.py` names, which is what every reader
(the app, nginx, a CDN) serves. A page is read again only when its stat changes, so the wait
costs a stat every few milliseconds.
"""

from __future__ import annotations

import html
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from packaging.utils import NormalizedName

from pypi_insiders.errors import InvalidDistributionError
from pypi_insiders.index.layout import IndexLayout
from pypi_insiders.store import parse_filename

log = logging.getLogger(__name__)

_POLL = 0.01  # seconds between two stats of the project's pages
# Beyond the debounce: the watcher's longest batching delay, the project's regeneration, and a
# full scan holding the generator (a cold start) for a while.
WAIT_MARGIN = 10.0

_Stamp = tuple[int, int, int] | None


def _stamp(path: Path) -> _Stamp:
    try:
        stat = os.stat(path)  # noqa: PTH116 - a stat per poll, nothing else
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


class IndexView:
    """The generated pages of one index directory, as a client would see them."""

    def __init__(self, index_dir: Path, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.layout = IndexLayout(index_dir)
        self._clock = clock

    def files(self, project: NormalizedName) -> list[dict[str, Any]]:
        """The file entries of the project's JSON page ([] without a page)."""
        page = self.layout.project_page(project, "json")
        try:
            data = json.loads(page.read_bytes())
            return [f for f in data["files"] if isinstance(f, dict)]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("%s: unreadable index page (%s)", page, error,
                        extra={"PROJECT": project, "FILE": str(page)})
            return []

    def projects(self) -> list[str]:
        """The names of the generated root list ([] before the first generation)."""
        try:
            data = json.loads(self.layout.root_list("json").read_bytes())
            return [str(p["name"]) for p in data["projects"]]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def listed(self, project: NormalizedName) -> dict[str, str]:
        """Filename -> sha256 of the files the project's JSON page lists ({} without a page)."""
        try:
            return {str(f["filename"]): str(f["hashes"]["sha256"]) for f in self.files(project)}
        except (KeyError, TypeError):
            return {}

    def release(self, project: NormalizedName, version: str) -> list[dict[str, Any]]:
        """The file entries of one release (`version` normalized)."""
        return [f for f in self.files(project) if _version_of(str(f.get("filename", ""))) == version]

    def lists(self, project: NormalizedName, filename: str) -> bool:
        """Whether both pages of the project (JSON and HTML) list `filename`."""
        if filename not in self.listed(project):
            return False
        try:
            body = self.layout.project_page(project, "html").read_bytes()
        except OSError:
            return False
        return f">{html.escape(filename)}<".encode() in body

    def wait_listed(self, project: NormalizedName, filename: str, timeout: float) -> bool:
        """Wait until both pages list `filename`, at most `timeout` seconds; whether they do."""
        return self.wait(project, lambda: self.lists(project, filename), timeout)

    def wait(self, project: NormalizedName, check: Callable[[], bool], timeout: float) -> bool:
        """Wait until `check()` holds, trying it again whenever the project's pages change."""
        pages = (self.layout.project_page(project, "json"), self.layout.project_page(project, "html"))
        deadline = self._clock() + timeout
        seen: tuple[_Stamp, ...] = ()
        while True:
            stamps = tuple(_stamp(page) for page in pages)
            if stamps != seen:
                seen = stamps
                if None not in stamps and check():
                    return True
            if self._clock() >= deadline:
                return False
            time.sleep(_POLL)


def _version_of(filename: str) -> str | None:
    try:
        return str(parse_filename(filename).version)
    except InvalidDistributionError:
        return None
