"""Reading distribution files (hash, archive check, metadata) on every core, for big runs.

Reading a file is the expensive part of a cold start, and most of it holds the GIL (zip and
tar parsing, the metadata parser), so threads overlap the disk but not the CPU. A run with
many files to read gets a pool of processes, one per usable core, for that run only: it is
made of fresh interpreters (`spawn`: the service has threads, a fork would copy their locks)
and gone after the run. Each worker writes the file's PEP 658 metadata file itself (it touches
only that file) and sends back the facts without the metadata's bytes; the rows are written
by the caller, in its one transaction.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from pypi_insiders.errors import InvalidDistributionError
from pypi_insiders.files import write_derived
from pypi_insiders.index.file_info import FileInfo, inspect
from pypi_insiders.index.layout import IndexLayout
from pypi_insiders.store import Store

log = logging.getLogger(__name__)

Outcome = FileInfo | InvalidDistributionError | None  # None: the file is gone
Reader = Callable[[list[str]], Iterator[Outcome]]
POOL_FROM = 200  # directories to diff in one run before a pool of processes pays for its start
_CHUNK = 32  # files per task sent to a worker
_START_TIMEOUT = 60.0  # seconds for the workers to start and answer once
_PARENT_CHECK = 0.5  # seconds between a worker's checks that its parent still runs


def read_one(store_root: str, index_root: str, relpath: str) -> Outcome:
    """One file's facts, its metadata file written; safe in any thread or process."""
    store = Store(Path(store_root))
    path = store.path_of(relpath)
    if path.is_symlink() and not path.resolve().is_relative_to(_real(store_root)):
        # The app refuses to serve it (it checks where links lead), so it must not be listed.
        return InvalidDistributionError(f"{path.name}: a symbolic link out of the store")
    try:
        info = inspect(path, relpath.rpartition("/")[2])
    except FileNotFoundError:
        return None
    except InvalidDistributionError as error:
        return error
    if info.metadata is None:
        return info
    write_derived(IndexLayout(Path(index_root)).metadata_file(relpath), info.metadata)
    return replace(info, metadata=None, metadata_sha256=hashlib.sha256(info.metadata).hexdigest())


@functools.cache
def _real(store_root: str) -> Path:
    return Path(store_root).resolve()


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@contextmanager
def reader(store_root: str, index_root: str, directories: int) -> Iterator[Reader]:
    """Something mapping relpaths to outcomes, in order: a process pool for many directories."""
    read = functools.partial(read_one, store_root, index_root)
    workers = cores()
    if directories < POOL_FROM or workers < 2:  # one core: a pool would only add copying
        yield lambda relpaths: map(read, relpaths)
        return
    pool = _start_pool(workers)
    if pool is None:
        yield lambda relpaths: map(read, relpaths)
        return
    with pool:
        yield lambda relpaths: pool.map(read, relpaths, chunksize=_CHUNK)


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
