"""The WSGI app: routes requests to the generated index, the store, upstream, status and upload.

Everything it serves was generated beforehand (see the on-disk contract in `index/layout.py`), so
a request is a route, a negotiated format, a `stat`, and bytes already in memory. Nothing
beyond that on the hot path but one access log entry (`access_log.py`, off with
`[server] access_log = false`): a project page must cost little more than waitress itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from packaging.utils import NormalizedName, canonicalize_name

from pypi_insiders.config import Config
from pypi_insiders.index import progress
from pypi_insiders.index.layout import PACKAGES_URL, SIMPLE_URL, IndexLayout
from pypi_insiders.index.pins import Pins
from pypi_insiders.mirror.mirror import Mirror
from pypi_insiders.mirror.render import MIRROR_URL
from pypi_insiders.project_names import is_normalized, is_valid
from pypi_insiders.state_layout import CacheLayout, StateLayout
from pypi_insiders.status_report import Snapshot
from pypi_insiders.store import Store
from pypi_insiders.web import (
    access,
    access_log,
    file_route,
    hooks,
    mirror_route,
    page_cache,
    project_page,
    status_page,
    upload,
    yank_api,
)
from pypi_insiders.web.access import View
from pypi_insiders.web.auth import Authenticator, AuthError, FailedLogins
from pypi_insiders.web.fallback import Fallback
from pypi_insiders.web.finish import finish
from pypi_insiders.web.forwarded import Forwarding
from pypi_insiders.web.negotiate import HTML, OFFERED_TEXT, Format, Negotiator, accepts_gzip
from pypi_insiders.web.response import (
    Response,
    being_generated,
    challenge,
    denied,
    not_generated,
    plain,
    redirect,
)

Environ = dict[str, Any]
StartResponse = Callable[..., Any]

_READ_ONLY = "GET, HEAD"
_READ_METHODS = frozenset({"GET", "HEAD"})
_UPLOAD_PATHS = upload.PATHS
_MAX_TARGET = 8192  # path and query; what nginx accepts by default, far beyond any real URL
_MAX_NAME = 255  # a project is a directory: a longer name cannot be held, here or upstream


@dataclass(frozen=True)
class _Live:
    """What a reload changes, swapped as one object: a request reads one snapshot from start to end."""

    config: Config
    root_page: str
    simple: str
    files: file_route.PublishedFiles
    uploads: upload.Uploads | None  # None while uploads are disabled
    policy: access.Policy
    scoped_roots: access.ScopedRoots
    progress_file: str  # present while the first generation runs (index/progress.py)
    mirror: mirror_route.MirrorRoutes | None  # with `upstream.fallback = "mirror"`


class IndexApp:
    """Routes; the state it needs (config, store, caches) is passed in, never global."""

    def __init__(self, config: Config, store: Store, fallback: Fallback, *,
                 pages: page_cache.PageCache | None = None, negotiator: Negotiator | None = None,
                 status: Snapshot | None = None) -> None:
        self.store = store
        self.status = status
        self.fallback = fallback
        # an empty cache is falsy: compare with None
        self.pages = pages if pages is not None else page_cache.PageCache(
            page_cache.limit_for(config.server.processes))
        self.negotiator = negotiator or Negotiator()
        state = StateLayout(config.paths.state)
        self.auth = Authenticator(config.upload.users_file, state.users_last_use,
                                  FailedLogins(shared=state.failed_logins))
        self.projects = project_page.ProjectPages(config.paths.index, config.paths.state)
        self.hooks = hooks.Hooks(self.auth.failed_logins)
        # A [server] setting: a reload keeps the one the service started with.
        self.access_log = access_log.AccessLog() if config.server.access_log else None
        self.forwarding = Forwarding(config.server.trusted_proxy, config.paths.state)  # [server]: no reload
        # Local `public_projects` go upstream for whoever may not read them: no pin applies there.
        self.public_fallback = Fallback(config.upstream, access.Unpinned(), client=fallback.client)
        self.mirror: Mirror | None = None  # made on the first config that asks for it
        self.reconfigure(config)

    def reconfigure(self, config: Config) -> None:
        """Applied live on SIGHUP: upstream, fallback and upload settings (paths need a restart)."""
        self.fallback.reconfigure(config.upstream)
        self.public_fallback.reconfigure(config.upstream)
        layout = IndexLayout(config.paths.index)
        uploads = upload.Uploads(config, self.store, self.auth) if config.upload.enabled else None
        policy = access.Policy(config.access)
        files = file_route.PublishedFiles(str(self.store.root), str(layout.packages), policy)
        self._live = _Live(config, str(layout.landing_page), layout.simple_prefix(), files,
                           uploads, policy, access.ScopedRoots(str(layout.simple)),
                           str(CacheLayout(config.paths.cache).first_generation), self._mirror_routes(config))

    def _mirror_routes(self, config: Config) -> mirror_route.MirrorRoutes | None:
        if config.upstream.fallback != "mirror":
            return None
        if self.mirror is None:
            self.mirror = Mirror(config.paths.cache, config.upstream, self.fallback.client)
        else:
            self.mirror.reconfigure(config.upstream)
        return mirror_route.MirrorRoutes(self.mirror, self.fallback, config.mirror_anonymous()[0])

    @property
    def config(self) -> Config:
        return self._live.config

    def close(self) -> None:
        """At shutdown: the upstream connections the proxy keeps open (one pool for both fallbacks)."""
        self.fallback.close()
        self.public_fallback.close()
        if self.access_log is not None:
            self.access_log.flush(now=True)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        began = time.perf_counter()
        self.forwarding.apply(environ)
        response, body = finish(environ, self._route(environ))
        start_response(response.status, response.headers)
        if self.access_log is not None:
            self.access_log.record(environ, response, began)
        return body

    def _route(self, environ: Environ) -> Response:
        method = environ["REQUEST_METHOD"]
        path: str = environ.get("PATH_INFO") or "/"
        if len(path) + len(environ.get("QUERY_STRING", "")) > _MAX_TARGET:
            return plain("414 URI Too Long", f"request target longer than {_MAX_TARGET} characters")
        if path.startswith(hooks.HOOKS_URL):  # a forge's push: any method, answered by the hook
            return self.hooks.answer(self.config, environ, path[len(hooks.HOOKS_URL):])
        if method in _READ_METHODS:
            return self._read_as(environ, path)
        if method == "POST" and (path in _UPLOAD_PATHS or path in yank_api.PATHS):
            return self._upload(environ, path)
        allow = "GET, HEAD, POST" if path == "/" else "POST" if path in _UPLOAD_PATHS else _READ_ONLY
        return plain("405 Method Not Allowed", f"{method} is not allowed here", [("Allow", allow)])

    # ------------------------------------------------------------------ read-only routes

    def _read_as(self, environ: Environ, path: str) -> Response:
        """Who is asking first: every answer below depends on it. REMOTE_USER (the CGI variable, for
        the access log and whatever wraps the app) is the one thing routing writes into environ."""
        try:
            user = self.auth.user(environ)
        except AuthError as refusal:
            return denied(refusal)
        if user is not None:
            environ["REMOTE_USER"] = user.name
        return self._read(environ, path, self._live.policy.view(user, environ))

    def _read(self, environ: Environ, path: str, view: View) -> Response:  # noqa: PLR0911 - a routing table
        if path.startswith(SIMPLE_URL):
            return self._simple_page(environ, path[len(SIMPLE_URL):], view)
        if path.startswith(PACKAGES_URL):
            return self._live.files.answer(environ, path[len(PACKAGES_URL):], view)
        if path.startswith(MIRROR_URL):
            if self._live.mirror is None:
                return plain("404 Not Found", "not found (upstream.fallback is not mirror)")
            return self._live.mirror.file(environ, path[len(MIRROR_URL):], view, self._live.policy.public)
        if path == project_page.PAGE_URL:  # the projects this caller may read
            names = (self.projects.index.projects() if view.read.everything
                     else self._live.scoped_roots.names(view.read))
            return _scoped(project_page.listing(names), HTML, view)
        if path.startswith(project_page.PAGE_URL):
            return self._project_page(environ, path[len(project_page.PAGE_URL):], view)
        if path == "/":
            if not view.read.everything:
                names = self._live.scoped_roots.names(view.read)
                return _scoped(access.home_page(names), HTML, view)
            return self._page(environ, self._live.root_page, HTML, vary=False, view=view) or not_generated()
        if path == "/simple":
            return redirect(_with_query("simple/", environ))
        if path in ("/status", "/status.json"):
            return self._status(path.endswith(".json"), view)
        if path in _UPLOAD_PATHS:
            return plain("405 Method Not Allowed", "the upload API takes POST", [("Allow", "POST")])
        return plain("404 Not Found", "not found")

    def _simple_page(self, environ: Environ, rest: str, view: View) -> Response:  # noqa: PLR0911
        formats = self.negotiator.choose(environ.get("HTTP_ACCEPT", ""), environ.get("QUERY_STRING", ""))
        if not formats:
            return plain("406 Not Acceptable", f"acceptable types are: {OFFERED_TEXT}",
                          [("Vary", "Accept")])
        fmt = formats[0]
        if not rest:
            if not view.read.everything:
                body = self._live.scoped_roots.body(view.read, fmt.suffix)
                return _scoped(body, fmt, view) if body is not None else not_generated()
            root = f"{self._live.simple}index.{fmt.suffix}"
            return self._page(environ, root, fmt, vary=True, view=view) or not_generated()
        project = self._project_in(environ, rest)
        if isinstance(project, Response):
            return project
        if not view.read.covers(project):
            return self._not_readable(environ, project, formats, view)
        page = f"{self._live.simple}{project}/index.{fmt.suffix}"
        found = self._page(environ, page, fmt, vary=True, view=view, project=project)
        if found is not None:
            return found
        if progress.generating(self._live.progress_file) and self.fallback.is_local(project):
            return being_generated(project)
        if self._live.mirror is not None and not self.fallback.is_local(project):
            return self._live.mirror.page(environ, project, formats, view)
        answer = self.fallback.answer(project, formats, environ.get("QUERY_STRING", ""))
        if answer.status.startswith("404") and self.fallback.is_local(project):
            return replace(answer, project=project)  # pinned, without files: still ours to audit
        return answer

    def _project_page(self, environ: Environ, rest: str, view: View) -> Response:
        """The human page: readable exactly when the project's simple page is, else refused."""
        project = self._project_in(environ, rest)
        if isinstance(project, Response):
            return project
        if not view.read.covers(project):
            if not self.fallback.is_local(project):
                return plain("404 Not Found", "no such project here")
            return self._live.policy.refuse(view, project)
        body = self.projects.body(project)
        if body is None:
            return plain("404 Not Found", "no such project here")
        return _scoped(body, HTML, view, project)

    def _not_readable(self, environ: Environ, project: NormalizedName, formats: tuple[Format, ...],
                      view: View) -> Response:
        """Upstream's project for `public_projects` and names never local; a refusal for the rest."""
        query = environ.get("QUERY_STRING", "")
        if project in self._live.policy.public:  # logged: who got upstream's build instead of ours
            if self._live.mirror is not None:
                mirrored = self._live.mirror.page(environ, project, formats, view, unpinned=True)
                return replace(mirrored, project=project)
            answer = self.public_fallback.answer(project, formats, query)
            return replace(answer, vary_auth=True, project=project)
        if self.fallback.is_local(project):
            return self._live.policy.refuse(view, project)
        if self._live.mirror is not None:
            return self._live.mirror.page(environ, project, formats, view)
        return self.fallback.answer(project, formats, query)

    def _project_in(self, environ: Environ, rest: str) -> NormalizedName | Response:
        """`NAME/` after a route's prefix: the name when it is spelled normalized, else the answer
        (a redirect to the normalized URL, or a 404)."""
        name, slash, tail = rest.partition("/")
        if tail or len(name) > _MAX_NAME or not is_normalized(name):
            return self._unnormalized(environ, name, slash, tail)
        if not slash:
            return redirect(_with_query(f"{name}/", environ))
        return canonicalize_name(name)

    def _unnormalized(self, environ: Environ, name: str, slash: str, tail: str) -> Response:
        """A valid name spelled otherwise moves to its normalized URL; anything else is a 404."""
        if tail or len(name) > _MAX_NAME or not is_valid(name):
            return plain("404 Not Found", "not a project name")
        target = f"{canonicalize_name(name)}/"
        return redirect(_with_query(f"../{target}" if slash else target, environ))

    def _page(self, environ: Environ, file: str, fmt: Format, *, vary: bool, view: View,
              project: NormalizedName | None = None) -> Response | None:
        page = self.pages.get(file, fmt.content_type, vary, project=project,
                              gzipped=accepts_gzip(str(environ.get("HTTP_ACCEPT_ENCODING", ""))))
        if page is None:
            return None
        return page.own if view.private else page.shared

    # ------------------------------------------------------------------ other routes

    def _status(self, as_json: bool, view: View) -> Response:
        if self.status is None:
            return plain("404 Not Found", "no status here")
        if view.user is None and not view.read.everything:
            return challenge("authentication required")
        report = self.status.read()  # written by the service's parent: no upstream, no systemctl here
        if report is None:
            return plain("503 Service Unavailable", "status not computed yet; try again in a few seconds",
                         [("Retry-After", str(status_page.RETRY_AFTER))])
        shown = self._live.policy.status_allowed(view, report)
        if self._live.mirror is None and shown.mirror is not None:  # a snapshot from before a reload
            shown = replace(shown, mirror=None)
        first = progress.read_str(self._live.progress_file)
        if as_json:
            body, content_type = status_page.as_json(shown, first), "application/json"
        else:
            body, content_type = status_page.render_html(shown, first).encode(), "text/html; charset=utf-8"
        return Response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body))),
                                   ("Cache-Control", "no-cache")], body, private=True)

    def _upload(self, environ: Environ, path: str) -> Response:
        """Uploads, and yanks (`/-/yank`, `/-/unyank`) by the users who may upload."""
        uploads = self._live.uploads
        if uploads is None:
            return plain("403 uploads are disabled", "uploads are disabled")
        if path in yank_api.PATHS:
            return uploads.yanks.handle(environ, path)
        return uploads.handle(environ)


def _scoped(body: bytes, fmt: Format, view: View, project: NormalizedName | None = None) -> Response:
    """A page rendered for one scope: never reused for another caller, never kept by a shared
    cache when made for credentials; an anonymous caller's is checked again on every use."""
    cache = "max-age=30" if view.private else "no-cache"
    return Response("200 OK", [("Content-Type", fmt.content_type), ("Content-Length", str(len(body))),
                               ("Cache-Control", cache), ("Vary", "Accept")], body,
                    private=view.private, vary_auth=True, project=project)


def _with_query(location: str, environ: Environ) -> str:
    query = environ.get("QUERY_STRING", "")
    return f"{location}?{query}" if query else location


def make_app(config: Config, store: Store | None = None, *, fallback: Fallback | None = None,
             pages: page_cache.PageCache | None = None, status: Snapshot | None = None) -> IndexApp:
    """The app for one config; the service keeps it to call `reconfigure` on SIGHUP."""
    store = store or Store.for_config(config)
    fallback = fallback or Fallback(config.upstream, Pins(StateLayout(config.paths.state).pinned_projects),
                                    config.paths.store, IndexLayout(config.paths.index).simple)
    return IndexApp(config, store, fallback, pages=pages, status=status)

