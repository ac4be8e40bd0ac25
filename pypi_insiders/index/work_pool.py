"""The per-file and per-project work of a run, on every core when the run is big.

A cold start reads every distribution (hash, archive check, metadata), writes a PEP 658 file
per wheel and two pages per project; most of that holds the GIL (zip and tar parsing,
rendering), so threads overlap the disk but not the CPU. A big run gets a pool of processes,
one per usable core, for that run only: fresh interpreters (`spawn`: the service has threads,
a fork would copy their locks), gone after the run. A worker writes only the files its task
names (a metadata file, a project's pages) and sends back facts, never bytes to write; the
rows are written by the caller, in its one transaction. A small run (the watcher's) does the
same work in the calling thread, through the same functions.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from packaging.utils import NormalizedName

from pypi_insiders.errors import InvalidDistributionError
from pypi_insiders.files import write_derived
from pypi_insiders.index import pages
from pypi_insiders.index.file_info import FileInfo, inspect
from pypi_insiders.index.layout import IndexLayout
from pypi_insiders.index.metadata_cache import FileRecord
from pypi_insiders.metadata import read_core_metadata
from pypi_insiders.store import Store

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Unservable:
    """A file that must not be served: why, and its (size, mtime_ns) from before it was read.

    The stat must not be taken after the read: a file still being written is read as broken,
    and a stat taken once it is whole would make the cache believe the whole file was read
    and found broken, so neither the watcher's notice nor a rescan would read it again.
    """

    reason: str
    size: int
    mtime_ns: int


Outcome = FileInfo | Unservable | None  # None: the file is gone
Reader = Callable[[list[str]], Iterator[Outcome]]
_T = TypeVar("_T")
_R = TypeVar("_R")
POOL_FROM = 200  # directories or projects in one run before a pool of processes pays for its start
_CHUNK = 128  # files (or projects) per task sent to a worker
_START_TIMEOUT = 60.0  # seconds for the workers to start and answer once
_PARENT_CHECK = 0.5  # seconds between a worker's checks that its parent still runs


def read_one(store_root: str, index_root: str, relpath: str) -> Outcome:
    """One file's facts, its metadata file written; safe in any thread or process."""
    store = Store(Path(store_root))
    path = store.path_of(relpath)
    filename = relpath.rpartition("/")[2]
    try:
        before = path.stat()  # a broken file is remembered by this stat: see Unservable
    except FileNotFoundError:
        return None
    if path.is_symlink() and not path.resolve().is_relative_to(_real(store_root)):
        # The app refuses to serve it (it checks where links lead), so it must not be listed.
        return Unservable("a symbolic link out of the store", before.st_size, before.st_mtime_ns)
    try:
        info = inspect(path, filename)
    except FileNotFoundError:
        return None
    except InvalidDistributionError as error:
        reason = str(error).removeprefix(f"{filename}: ")
        return Unservable(reason, before.st_size, before.st_mtime_ns)
    if info.metadata is None:
        return info
    write_derived(IndexLayout(Path(index_root)).metadata_file(relpath), info.metadata)
    return replace(info, metadata=None, metadata_sha256=hashlib.sha256(info.metadata).hexdigest())


def rebuild_metadata(store_root: str, index_root: str, file: tuple[str, str]) -> bool:
    """The PEP 658 file of a file read before, (relpath, its metadata's sha256), written again
    if the index lost it; False when the distribution no longer has that metadata (changed
    under us: the next scan reads it)."""
    relpath, sha256 = file
    target = IndexLayout(Path(index_root)).metadata_file(relpath)
    if os.path.exists(target):  # noqa: PTH110 - the cheaper call, for every file of every due project
        return True
    try:
        raw = read_core_metadata(Store(Path(store_root)).path_of(relpath), relpath.rpartition("/")[2]).raw
    except (InvalidDistributionError, OSError):
        return False
    if hashlib.sha256(raw).hexdigest() != sha256:
        return False
    write_derived(target, raw)
    return True


@dataclass(frozen=True)
class PageJob:
    """One project's two pages, from its records and settings (a worker renders and writes them)."""

    name: NormalizedName
    records: list[FileRecord]
    yanked: Mapping[str, str]
    tracks: str | None


def write_pages(index_root: str, job: PageJob) -> None:
    layout = IndexLayout(Path(index_root))
    html, document = pages.project_pages(job.name, job.records, job.yanked, job.tracks)
    write_derived(layout.project_page(job.name, "json"), document)
    write_derived(layout.project_page(job.name, "html"), html)


@functools.cache
def _real(store_root: str) -> Path:
    return Path(store_root).resolve()


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class Work:
    """A run's work, in order, on the pool of processes it was given or in this thread."""

    def __init__(self, store_root: str, index_root: str, pool: ProcessPoolExecutor | None) -> None:
        self._store_root = store_root
        self._index_root = index_root
        self._pool = pool
        self._writing: Iterator[None] = iter(())

    def read(self, relpaths: list[str]) -> Iterator[Outcome]:
        """Each file's outcome, in order (its metadata file written)."""
        return self._map(functools.partial(read_one, self._store_root, self._index_root), relpaths)

    def rebuild(self, files: list[tuple[str, str]]) -> Iterator[bool]:
        """For each (relpath, metadata sha256): is its metadata file in place now?"""
        return self._map(functools.partial(rebuild_metadata, self._store_root, self._index_root), files)

    def write_pages(self, jobs: list[PageJob]) -> None:
        """Start writing these pages: on a pool they are written while the caller prepares the
        next batch (the previous batch's are waited for first). `settle` waits for them all."""
        self.settle()
        self._writing = self._map(functools.partial(write_pages, self._index_root), jobs)
        if self._pool is None:
            self.settle()

    def settle(self) -> None:
        """Every page handed to write_pages is on disk (or its error raised here)."""
        writing, self._writing = self._writing, iter(())
        for _written in writing:
            pass

    def _map(self, function: Callable[[_T], _R], items: list[_T]) -> Iterator[_R]:
        if self._pool is None:
            return map(function, items)
        return self._pool.map(function, items, chunksize=_CHUNK)


@contextmanager
def running(store_root: str, index_root: str, units: int) -> Iterator[Work]:
    """The run's Work: a pool of processes when `units` (directories or projects) is many."""
    workers = cores()
    if units < POOL_FROM or workers < 2:  # one core: a pool would only add copying
        yield Work(store_root, index_root, None)
        return
    pool = _start_pool(workers)
    if pool is None:
        yield Work(store_root, index_root, None)
        return
    with pool:
        yield Work(store_root, index_root, pool)


def _start_pool(workers: int) -> ProcessPoolExecutor | None:
    """The pool, its workers started and answering; None (and one warning) where it cannot run."""
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_watch_parent, initargs=(os.getpid(),))
    try:
        for future in [pool.submit(os.getpid) for _ in range(workers)]:
            future.result(timeout=_START_TIMEOUT)
    except (OSError, BrokenProcessPool, TimeoutError) as error:
        log.warning("reading files in this process only: no pool of processes (%s)", error)
        pool.shutdown(wait=False, cancel_futures=True)
        return None
    return pool


def _watch_parent(parent: int) -> None:
    """In each worker: a parent killed with SIGKILL never closes the queue; leave with it."""
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(_PARENT_CHECK)
    os._exit(1)
