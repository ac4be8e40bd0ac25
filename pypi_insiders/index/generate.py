"""The static simple index, derived only from the store: pages, metadata files, pinned names.

`sync.StoreSync` says which projects changed (reading only new or changed files); this module
renders just those again, and the root list only when the set of projects changes. Every
output goes through `atomic_write`, metadata files before the pages that point to them, so a
reader never sees half a page or a link to a missing file. One lock serialises the watcher
thread and reloads; the long walk of a full scan runs outside it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from packaging.utils import NormalizedName, canonicalize_name

from pypi_insiders.config import Config
from pypi_insiders.errors import InvalidDistributionError
from pypi_insiders.files import atomic_write
from pypi_insiders.index import pages
from pypi_insiders.index.cache_sync import Changes, StoreSync
from pypi_insiders.index.layout import SUFFIXES, IndexLayout
from pypi_insiders.index.metadata_cache import Cache, FileRecord
from pypi_insiders.index.pins import pins_path, read_pins, write_pins
from pypi_insiders.metadata import read_core_metadata
from pypi_insiders.store import Store

log = logging.getLogger(__name__)

PAGE_FORMAT = "1"  # bump when the pages change shape: every project is then rendered again
CACHE_FILE = "index.sqlite3"
_COMMIT_EVERY = 2000  # files read (or projects rendered) between commits of a long cold run
_LATEST = 20
_READERS = 8  # threads reading distribution files in big runs
_PARALLEL_FROM = 8  # directories or projects in one run before reader threads are worth starting
_RENDER_BATCH = 100  # projects rendered together: their pages are in memory until written


@dataclass
class Stats:
    """Counters since this generator was made, for tests and status lines."""

    runs: int = 0
    files_read: int = 0
    projects_regenerated: int = 0
    root_writes: int = 0


@dataclass
class _Run(Changes):
    served: set[str] = field(default_factory=set)
    regenerated: int = 0
    root_changed: bool = False


def _yank_table(yanked: Mapping[NormalizedName, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    return {project: pages.yank_reasons(versions) for project, versions in yanked.items() if versions}


def tracked(config: Config) -> dict[str, str]:
    """`[access] public_projects` -> their upstream page (without any credentials in its URL)."""
    if not config.upstream.url:
        return {}
    parts = urlsplit(config.upstream.url)
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    base = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return {name: f"{base}{name}/" for name in sorted(config.access.public_projects)}


def _write_page(item: tuple[Path, bytes]) -> None:
    atomic_write(item[0], item[1], durable=False)


class Generator:
    def __init__(self, store: Store, index_dir: Path, state_dir: Path, cache_dir: Path,
                 yanked: Mapping[NormalizedName, Mapping[str, str]], *,
                 tracks: Mapping[str, str] | None = None) -> None:
        """`tracks`: project -> the upstream project page it carries as PEP 708 `tracks`."""
        self.store = store
        self._root = str(store.root)
        self.index_dir = index_dir
        self.layout = IndexLayout(index_dir)
        self._simple = self.layout.simple
        self._packages = self.layout.packages
        self.pins_file = pins_path(state_dir)
        self._lock = threading.RLock()
        self._cache = Cache(cache_dir / CACHE_FILE)
        self._sync = StoreSync(store, self._cache, self.layout, self._checkpoint)
        self._yanked = _yank_table(yanked)
        self._tracks = dict(tracks or {})
        self._pinned = read_pins(self.pins_file)
        self.stats = Stats()
        self._reading = 0  # files read so far by the run in progress

    def progress(self) -> int:
        """A number that grows while generation makes headway; read without the lock, on purpose."""
        return self.stats.files_read + self._reading + self.stats.projects_regenerated

    @classmethod
    def from_config(cls, config: Config) -> Generator:
        paths = config.paths
        return cls(Store(paths.store), paths.index, paths.state, paths.cache, config.index.yanked,
                   tracks=tracked(config))

    def close(self) -> None:
        with self._lock:
            self._cache.close()

    # ----------------------------------------------------------------- public API

    def generate_all(self) -> None:
        """Full scan: bring every page up to date with the store, reading only what changed."""
        started = time.monotonic()
        with self._lock:
            known = self._cache.dir_fingerprints()
        # The walk reads only the filesystem, so it runs without the lock: a new file need not
        # wait for 200,000 stats. A change made meanwhile is seen by the walk or handled by
        # update_paths, which also invalidates the fingerprint of the directory it touched.
        changed, seen = self._sync.changed_dirs("", known)
        with self._lock, self._transaction(), self._readers(len(changed)) as readers:
            run = _Run()
            for directory in changed:
                self._sync.sync_dir(directory, run, readers)
            # Every directory holding rows has a fingerprint row (maybe invalidated), so the
            # snapshot lists every candidate without reading the files table.
            self._sync.drop_dirs(set(known) - seen, run)
            run.dirty |= self._stale_projects()
            self._publish(run, full=True)
            projects, files = self._cache.totals()
            broken = self._cache.broken_count()
        unserved = f", {broken} store files not served (see the warnings naming them)" if broken else ""
        log.info("index generated: %d projects, %d files; %d project pages regenerated, %d unchanged; "
                 "%d files read, %.2f s%s", projects, files, run.regenerated,
                 max(projects - run.regenerated, 0), run.files_read, time.monotonic() - started, unserved)

    def update_paths(self, relpaths: Iterable[str]) -> None:
        """Store-relative paths that changed (files or directories, created, moved or deleted)."""
        with self._lock, self._transaction():
            run = _Run()
            for relpath in sorted({p.strip("/") for p in relpaths}):
                self._sync.update(relpath, run)
            self._publish(run, full=False)

    def reconfigure(self, config: Config) -> None:
        """New yank settings: render again exactly the projects whose settings changed."""
        if (config.paths.store, config.paths.index) != (self.store.root, self.index_dir):
            log.warning("paths.store and paths.index changes take effect at the next restart")
        with self._lock, self._transaction():
            self._yanked = _yank_table(config.index.yanked)
            self._tracks = tracked(config)
            run = _Run(dirty={name for name, (_files, yank) in self._cache.project_state().items()
                              if yank != self._yank_key(name)})
            self._publish(run, full=False)

    # ----------------------------------------------------------------- reading the store

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

    @contextmanager
    def _readers(self, directories: int) -> Iterator[Executor | None]:
        """Threads for reading files in a big run: a cold start waits on the disk, not the CPU.

        Made per run and gone after it, so no idle thread outlives a scan (the service forks).
        """
        if directories < _PARALLEL_FROM:
            yield None
            return
        with ThreadPoolExecutor(_READERS, thread_name_prefix="index-reader") as pool:
            yield pool

    def _checkpoint(self, count: int) -> None:
        """Commit now and then in long runs, so an interrupted cold start keeps its progress."""
        self._reading = count
        if count % _COMMIT_EVERY == 0:
            self._cache.commit()
            self._cache.begin()

    # ----------------------------------------------------------------- writing the index

    def _stale_projects(self) -> set[NormalizedName]:
        """Projects to render although no file changed: left dirty, yanks changed, pages missing."""
        stale = self._cache.dirty_projects()
        everything = (self._cache.get_meta("page_format") != PAGE_FORMAT
                      or not self._packages.is_dir())  # metadata files deleted: rebuild them all
        for name, (files, yank) in self._cache.project_state().items():
            if everything or yank != self._yank_key(name) or (files > 0 and not self._has_pages(name)):
                stale.add(name)
        return stale

    def _has_pages(self, name: NormalizedName) -> bool:
        """Strings and os.stat: this runs for every project at every rescan."""
        base = f"{self._simple}/{name}/index."
        try:
            os.stat(base + "html")  # noqa: PTH116 - a Path per project costs more than the stat
            os.stat(base + "json")  # noqa: PTH116
        except FileNotFoundError:
            return False
        return True

    def _publish(self, run: _Run, *, full: bool) -> None:
        self.stats.files_read += run.files_read
        self._reading = 0
        names = sorted(run.dirty)
        with self._readers(len(names)) as readers:
            for start in range(0, len(names), _RENDER_BATCH):
                self._regenerate(names[start:start + _RENDER_BATCH], run, readers)
                self._checkpoint(start + _RENDER_BATCH)
        root_missing = not all(self.layout.root_list(suffix).exists() for suffix in SUFFIXES)
        if run.root_changed or root_missing or (full and self._cache.get_meta("page_format") != PAGE_FORMAT):
            served = list(self._cache.served_projects())
            self._write_root(served)
            if full:
                run.served.update(served)
        elif full:
            run.served.update(self._cache.served_projects())
        if run.regenerated or run.root_changed or not self.layout.landing_page.exists():
            projects, files = self._cache.totals()
            atomic_write(self.layout.landing_page,
                         pages.home_page(projects, files, self._cache.latest_files(_LATEST)), durable=False)
        if full:  # only a full run has rendered every project in the current format
            self._cache.set_meta("page_format", PAGE_FORMAT)
            self._packages.mkdir(parents=True, exist_ok=True)  # its absence means "rebuild metadata"
        self._pin(run.served)
        self.stats.runs += 1

    def _regenerate(self, names: list[NormalizedName], run: _Run, readers: Executor | None) -> None:
        """Render a batch of projects. The disk work (metadata files rebuilt after the index was
        deleted, page writes) goes to the reader threads; the cache stays in this thread."""
        chosen = {name: self._deduplicate(self._cache.project_files(name)) for name in names}
        mapper = readers.map if readers is not None else map
        flat = [record for records in chosen.values() for record in records]
        checked = dict(zip((r.relpath for r in flat), mapper(self._with_metadata, flat), strict=True))
        writes: list[tuple[Path, bytes]] = []
        for name, records in chosen.items():
            writes += self._render(name, [checked[r.relpath] for r in records], run)
        for _written in mapper(_write_page, writes):
            pass

    def _render(self, name: NormalizedName, records: list[FileRecord], run: _Run) -> list[tuple[Path, bytes]]:
        """One project's pages to write (none when it has no files left: its pages are removed)."""
        was_served = self._cache.served_count(name) > 0
        directory = self.layout.project_dir(name)
        writes: list[tuple[Path, bytes]] = []
        if records:
            html, document = pages.project_pages(name, records, self._yanked.get(name, {}),
                                                 self._tracks.get(name))
            directory.mkdir(parents=True, exist_ok=True)
            writes = [(self.layout.project_page(name, "json"), document),
                      (self.layout.project_page(name, "html"), html)]
            run.served.add(name)
        else:
            for suffix in SUFFIXES:
                self.layout.project_page(name, suffix).unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # gone already, or holds a stranger's file: leave it
                directory.rmdir()
        self._cache.set_project(name, len(records), self._yank_key(name))
        run.root_changed |= was_served != bool(records)
        run.regenerated += 1
        self.stats.projects_regenerated += 1
        return writes

    def _deduplicate(self, records: list[FileRecord]) -> list[FileRecord]:
        """One record per filename: the first path wins, the others are warned about."""
        chosen: dict[str, FileRecord] = {}
        for record in sorted(records, key=lambda r: r.relpath):
            kept = chosen.get(record.filename)
            if kept is not None:
                log.warning("%s is in the store twice, as %s and %s: serving %s", record.filename,
                            kept.relpath, record.relpath, kept.relpath, extra={"FILE": record.relpath})
                continue
            chosen[record.filename] = record
        return list(chosen.values())

    def _with_metadata(self, record: FileRecord) -> FileRecord:
        """The metadata file is derived too: rebuild it if the index was deleted under us."""
        if not record.metadata_sha256 or self._sync.metadata_path(record.relpath).exists():
            return record
        try:
            raw = read_core_metadata(self.store.path_of(record.relpath), record.filename).raw
        except (InvalidDistributionError, OSError):
            raw = b""
        if hashlib.sha256(raw).hexdigest() != record.metadata_sha256:
            return replace(record, metadata_sha256=None)  # changed under us; the next scan reads it
        self._sync.write_metadata(record.relpath, raw)
        return record

    def _write_root(self, served: list[NormalizedName]) -> None:
        html, document = pages.root_pages(served)
        self._simple.mkdir(parents=True, exist_ok=True)
        atomic_write(self.layout.root_list("json"), document, durable=False)
        atomic_write(self.layout.root_list("html"), html, durable=False)
        self.stats.root_writes += 1

    def _yank_key(self, name: NormalizedName) -> str:
        """What else than its files a page depends on: a change renders it again."""
        reasons = self._yanked.get(name)
        key = json.dumps(sorted(reasons.items())) if reasons else ""
        tracks = self._tracks.get(name)
        return f"{key}\ntracks={tracks}" if tracks else key

    # ----------------------------------------------------------------- pinned names

    def _pin(self, served: Iterable[str]) -> None:
        """Once served here, a name never falls through to upstream: the list only grows."""
        new = {canonicalize_name(name) for name in served} - self._pinned
        if not new:
            return
        self._pinned |= new | read_pins(self.pins_file)  # another process (`generate`) may have added some
        write_pins(self.pins_file, self._pinned)
        log.info("pinned %d new project name(s) to this index", len(new))
