"""The read policy: which local projects a caller may see, and what it gets for the others.

`[access] anonymous` says whether a caller without credentials reads every local project
("read") or none ("none"); a user reads what its read scope covers. A local project the caller
may not read answers 401 (no credentials: clients such as pip and uv send theirs only after a
401) or 403, never a redirect upstream, which would hand a sponsor the public build. The
exception is `[access] public_projects`: local Insiders builds of a public project, which a
caller who may not read them gets from upstream exactly like a name that was never local.
That is how one index URL serves sponsors and contributors alike.

The default `anonymous = "read"` on loopback holds only for callers on this host: a request that
carries proxy headers from a proxy that is not `[server] trusted_proxy` (`forwarded.py`) may come
from anywhere, and its anonymous caller reads nothing unless `anonymous = "read"` was set.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Final, NamedTuple

from packaging.utils import NormalizedName, canonicalize_name

from pypi_insiders.config import AccessConfig
from pypi_insiders.index import pages
from pypi_insiders.index.pins import Pins
from pypi_insiders.status_report import StatusReport
from pypi_insiders.web.forwarded import UNTRUSTED_PROXY
from pypi_insiders.web.response import NO_STORE, Response, challenge, plain
from pypi_insiders.web.scopes import EVERYTHING, NOTHING, Scope
from pypi_insiders.web.users import User

_SCOPED_PAGES: Final = 256  # root lists of distinct scopes kept rendered


class View(NamedTuple):
    """One caller: its user (None: anonymous) and what it may read."""

    user: User | None
    read: Scope

    @property
    def private(self) -> bool:
        """Whether answers are this caller's own: no shared cache may keep or reuse them."""
        return self.user is not None


_NOBODY: Final = View(None, NOTHING)


class Policy:
    """The `[access]` settings applied to one caller at a time; replaced whole on reload."""

    def __init__(self, settings: AccessConfig) -> None:
        self.settings = settings
        self.public = settings.public_projects
        self._anonymous = View(None, EVERYTHING if settings.anonymous == "read" else NOTHING)
        self._read_by_default = settings.anonymous == "read" and settings.reason.startswith("default:")

    def view(self, user: User | None, environ: Mapping[str, Any] | None = None) -> View:
        if user is not None:
            return View(user, user.read)
        if self._read_by_default and environ is not None and environ.get(UNTRUSTED_PROXY):
            return _NOBODY
        return self._anonymous

    def refuse(self, view: View, project: NormalizedName | None = None) -> Response:
        """For a local project this caller may not read; the body names nothing of it."""
        if view.user is None:
            return challenge("authentication required", project)
        return plain("403 Forbidden", f"user {view.user.name!r} may not read this project", [NO_STORE],
                     vary_auth=True, project=project)

    def status_allowed(self, view: View, report: StatusReport) -> StatusReport:
        """`/status` as this caller may see it: a caller who may not read every project gets only
        the repositories whose distribution it may read, and no configuration problem (it names
        private repositories and paths)."""
        if view.read.everything:
            return report
        shown = tuple(repo for repo in report.repositories
                      if repo.distribution and view.read.covers(canonicalize_name(repo.distribution)))
        hooks = report.webhooks
        if hooks is not None:  # a queued key names a repository too
            keys = {repo.key for repo in shown}
            hooks = replace(hooks, queue=tuple(q for q in hooks.queue if q.key in keys))
        return replace(report, repositories=shown, config_problem=None, webhooks=hooks)


class Unpinned(Pins):
    """No name is pinned: the fallback for `public_projects`, which are local and go upstream."""

    def __init__(self) -> None:
        super().__init__(Path(os.devnull))

    def __contains__(self, name: object) -> bool:
        return False


class ScopedRoots:
    """The root list (HTML and JSON) of the local projects one scope covers, rendered on demand.

    Only callers that may not read everything come here; they get the projects in their scope
    that have a page now. Kept per (scope, format), valid while the generated root list is.
    """

    def __init__(self, simple_dir: str) -> None:
        self.simple_dir = simple_dir
        self._pages: OrderedDict[tuple[frozenset[NormalizedName], str], tuple[tuple[int, int], bytes]]
        self._pages = OrderedDict()
        self._lock = threading.Lock()

    def body(self, scope: Scope, suffix: str) -> bytes | None:
        """None when the index has not been generated yet."""
        try:
            stat = os.stat(os.path.join(self.simple_dir, f"index.{suffix}"))  # noqa: PTH116,PTH118
        except OSError:
            return None
        stamp = (stat.st_mtime_ns, stat.st_ino)
        key = (scope.names, suffix)
        found = self._pages.get(key)
        if found is not None and found[0] == stamp:
            return found[1]
        html, document = pages.root_pages(self.names(scope))
        body = document if suffix == "json" else html
        with self._lock:
            self._pages[key] = (stamp, body)
            while len(self._pages) > _SCOPED_PAGES:
                self._pages.popitem(last=False)
        return body


    def names(self, scope: Scope) -> list[NormalizedName]:
        """The projects of the scope that have a page now (a scope may name projects to come)."""
        return sorted(n for n in scope.names if os.path.isdir(os.path.join(self.simple_dir, n)))  # noqa: PTH112,PTH118


def home_page(names: Iterable[str]) -> bytes:
    """"/" for a caller who may not read everything: its own projects, not the whole store's."""
    shown = sorted(names)
    items = "".join(f'      <li><a href="project/{n}/">{n}</a></li>\n' for n in shown)
    listing = f"    <ul>\n{items}    </ul>\n" if shown else "    <p>No local project is yours to read.</p>\n"
    return ("<!DOCTYPE html>\n<html>\n  <head>\n    <meta charset=\"utf-8\">\n"
            "    <title>pypi-insiders</title>\n  </head>\n  <body>\n    <h1>pypi-insiders</h1>\n"
            + listing + '    <p>See <a href="project/">the projects</a> or the '
            '<a href="simple/">simple index</a>.</p>\n'
            "  </body>\n</html>\n").encode()

