"""The static simple index, derived only from the store: the generator that keeps it current.

`cache_sync.StoreSync` says which projects changed (reading only new or changed files);
`project_render` renders just those again, `listings` the root list only when the set of
projects changes, and `pins` remembers every name served. This module decides what runs
when: one lock serialises the watcher thread and reloads, the long walk of a full scan runs
outside it, and long runs commit the cache now and then so an interrupted one keeps its work.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from pypi_insiders.config import Config
from pypi_insiders.index import due, listings, work_pool
from pypi_insiders.index.cache_sync import StoreSync
from pypi_insiders.index.layout import IndexLayout
from pypi_insiders.index.metadata_cache import Cache
from pypi_insiders.index.page_settings import PageSettings
from pypi_insiders.index.pins import Pinner, names_in_store
from pypi_insiders.index.project_render import ProjectRenderer, Run
from pypi_insiders.index.yanks import YankState
from pypi_insiders.state_layout import CacheLayout, StateLayout
from pypi_insiders.store import Store
from pypi_insiders.wording import counted

log = logging.getLogger(__name__)

_COMMIT_EVERY = 500  # files read (or projects rendered) between commits of a long cold run
_RENDER_BATCH = 500  # projects rendered together, their pages written while the next are read


@dataclass
class Stats:
    """Counters since this generator was made, for tests and status lines."""

    runs: int = 0
    files_read: int = 0
    projects_regenerated: int = 0
    root_writes: int = 0


class Generator:
    def __init__(self, store: Store, index_dir: Path, state_dir: Path, cache_dir: Path,
                 settings: PageSettings) -> None:
        """`settings` from the config; yanks from `<state>/yanked.json` are added to them."""
        self.store = store
        self.index_dir = index_dir
        self.layout = IndexLayout(index_dir)
        self._lock = threading.RLock()
        self._cache = Cache(CacheLayout(cache_dir).metadata_db)
        self._sync = StoreSync(store, self._cache, self.layout, self._checkpoint)
        self._renderer = ProjectRenderer(self._cache, self.layout)
        self._configured = settings
        self._yanks = YankState(state_dir)
        self._settings = settings.with_yanks(self._yanks.reasons())
        self._pins = Pinner(StateLayout(state_dir).pinned_projects)
        self.stats = Stats()
        self._reading = 0  # files read so far by the run in progress
        self._committed_at = 0  # the count at the last commit of a long run

    @classmethod
    def from_config(cls, config: Config) -> Generator:
        paths = config.paths
        settings = PageSettings.from_config(config)
        return cls(Store(paths.store), paths.index, paths.state, paths.cache, settings)

    def progress(self) -> int:
        """A number that grows while generation makes headway; read without the lock, on purpose."""
        return self.stats.files_read + self._reading + self.stats.projects_regenerated

    def pin_store(self) -> int:
        """Pin every project the store holds, from names alone: done before a fresh instance serves,
        so no local name can fall through upstream while its pages are still being made."""
        with self._lock:
            names = names_in_store(self.store.root)
            pinned = self._pins.pin(names)
        log.info("%d local projects pinned before serving (%d new)", len(names), pinned)
        return len(names)

    def close(self) -> None:
        with self._lock:
            self._cache.close()

    def generate_all(self) -> None:
        """Full scan: bring every page up to date with the store, reading only what changed."""
        started = time.monotonic()
        with self._lock:
            known = self._cache.dir_fingerprints()
        # The walk reads only the filesystem, so it runs without the lock: a new file need not
        # wait for 200,000 stats. A change made meanwhile is seen by the walk or handled by
        # update_paths, which also invalidates the fingerprint of the directory it touched.
        changed, seen = self._sync.changed_dirs("", known)
        with self._lock, self._transaction():
            self._settings = self._configured.with_yanks(self._yanks.reasons())
            # Due from the last run's rows, before this run's reads recreate any of the index.
            stale = due.stale_projects(self._cache, self.layout, self._settings)
            # Every directory holding rows has a fingerprint row (maybe invalidated), so the
            # snapshot lists every candidate without reading the files table. One the walk
            # missed may be back by now, its new files already recorded by update_paths:
            # diffed, not dropped, or they would vanish from their pages until the next scan.
            missed = set(known) - seen
            back = self._sync.still_there(missed)
            with self._work(len(changed) + len(back) + len(stale)) as work:
                run = Run()
                self._sync.sync_dirs(changed + sorted(back), run, work.read)
                self._sync.drop_dirs(missed - back, run)
                run.dirty |= stale
                self._publish(run, full=True, work=work)
            projects, files = self._cache.totals()
            broken = self._cache.broken_count()
        with self._lock, self._cache.exclusive():  # not while `pypi-insiders generate` writes
            self._cache.shrink_wal()
        unserved = f", {broken} store files not served (see the warnings naming them)" if broken else ""
        log.info("index generated: %s, %s; %s regenerated, %d unchanged; "
                 "%s read, %.2f s%s", counted(projects, "project"), counted(files, "file"),
                 counted(run.regenerated, "project page"),
                 max(projects - run.regenerated, 0), counted(run.files_read, "file"),
                 time.monotonic() - started, unserved)

    def update_paths(self, relpaths: Iterable[str]) -> None:
        """Store-relative paths that changed (files or directories, created, moved or deleted)."""
        with self._lock, self._transaction():
            run = Run()
            for relpath in sorted({p.strip("/") for p in relpaths}):
                self._sync.update(relpath, run)
            self._publish(run, full=False)

    def reconfigure(self, config: Config) -> None:
        """New yank settings: render again exactly the projects whose settings changed."""
        if (config.paths.store, config.paths.index) != (self.store.root, self.index_dir):
            log.warning("paths.store and paths.index changes take effect at the next restart")
        with self._lock, self._transaction():
            self._configured = PageSettings.from_config(config)
            self._settings = self._configured.with_yanks(self._yanks.reasons())
            self._publish(Run(dirty=due.settings_changed(self._cache, self._settings)), full=False)

    def refresh_yanks(self) -> None:
        """`yanked.json` changed: render again the projects whose yanks changed."""
        with self._lock:
            if not self._yanks.changed():
                return
            with self._transaction():
                self._settings = self._configured.with_yanks(self._yanks.reasons())
                self._publish(Run(dirty=due.settings_changed(self._cache, self._settings)), full=False)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._cache.exclusive():
            self._cache.begin()
            try:
                yield
            except BaseException:
                self._cache.rollback()
                raise
            self._cache.commit()

    def _work(self, units: int) -> AbstractContextManager[work_pool.Work]:
        """Every core reads files and writes pages in a big run (a process pool, for this run
        only, so nothing idle outlives a scan: the service forks)."""
        return work_pool.running(str(self.store.root), str(self.index_dir), units)

    def _checkpoint(self, count: int, settle: Callable[[], None] | None = None) -> None:
        """Commit every _COMMIT_EVERY files (or projects) in long runs, so an interrupted cold
        start keeps its progress and the WAL stays near one transaction's size; `settle` first
        finishes what the rows being committed describe."""
        self._reading = count
        if count < self._committed_at:  # a new run, or a run's next phase, counts from zero
            self._committed_at = 0
        if count - self._committed_at >= _COMMIT_EVERY:
            if settle is not None:
                settle()
            self._cache.commit()
            self._cache.begin()
            self._committed_at = count

    def _publish(self, run: Run, *, full: bool, work: work_pool.Work | None = None) -> None:
        """Render what is due, then the listings, then pin what was served."""
        self.stats.files_read += run.files_read
        self._reading = 0
        names = sorted(run.dirty)
        with contextlib.nullcontext(work) if work is not None else self._work(len(names)) as lent:
            for start in range(0, len(names), _RENDER_BATCH):
                before = run.regenerated
                self._renderer.render(names[start:start + _RENDER_BATCH], self._settings, run, lent)
                self.stats.projects_regenerated += run.regenerated - before
                # A commit says these projects are rendered: only once their pages are written.
                self._checkpoint(start + _RENDER_BATCH, settle=lent.settle)
            lent.settle()
        self._publish_listings(run, full=full)
        if full:
            due.mark_format_current(self._cache, self.layout)
        pinned = self._pins.pin(run.served)
        if pinned:
            log.info("pinned %s to this index", counted(pinned, "new project name"))
        self.stats.runs += 1

    def _publish_listings(self, run: Run, *, full: bool) -> None:
        reformat = full and due.format_changed(self._cache)
        if run.root_changed or reformat or listings.root_list_missing(self.layout):
            served = list(self._cache.served_projects())
            listings.write_root_list(self.layout, served)
            self.stats.root_writes += 1
            if full:
                run.served.update(served)
        elif full:
            run.served.update(self._cache.served_projects())
        if run.regenerated or run.root_changed or not self.layout.landing_page.exists():
            listings.write_landing_page(self.layout, self._cache)
