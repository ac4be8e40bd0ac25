"""The cache brought in line with the store: which files changed, read once, remembered.

Two levels of skipping keep a rescan of 200,000 files cheap: a directory whose listing
fingerprint is unchanged is not diffed, and a file whose (size, mtime_ns) is unchanged is not
read. Reading a wheel also writes its PEP 658 metadata file, before any page can point to it.
What changed is reported as a set of project names; rendering them is the generator's job.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import NormalizedName

from pypi_insiders.errors import StoreError
from pypi_insiders.index import store_scan, work_pool
from pypi_insiders.index.layout import IndexLayout
from pypi_insiders.index.metadata_cache import Cache, FileRecord
from pypi_insiders.index.work_pool import Outcome, Reader, Unservable
from pypi_insiders.store import Store, is_hidden

log = logging.getLogger(__name__)

_DIRS_PER_BATCH = 64  # directories whose files are read together (one pool map) in a big run


@dataclass
class _DirPlan:
    directory: str
    files: list[tuple[str, int, int]]
    old: dict[str, FileRecord]  # rows left after the listing: files gone
    to_read: list[tuple[str, FileRecord | None]]


@dataclass
class Changes:
    """What a sync found: projects whose files changed (also marked dirty in the cache)."""

    dirty: set[NormalizedName] = field(default_factory=set)
    files_read: int = 0
    # Files whose PEP 658 metadata file this run wrote: rendering need not look for it on disk.
    metadata_written: set[str] = field(default_factory=set)


def _encodable(name: str) -> bool:
    """sqlite (and every client) needs UTF-8; an undecodable name cannot be a distribution anyway."""
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


def _size_and_mtime(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:  # gone since we looked; reading it will notice
        return None
    return stat.st_size, stat.st_mtime_ns


class StoreSync:
    def __init__(self, store: Store, cache: Cache, layout: IndexLayout,
                 checkpoint: Callable[[int], None]) -> None:
        self.store = store
        self._root = str(store.root)
        self._real_root = store.root.resolve()
        self._cache = cache
        self._layout = layout
        self._checkpoint = checkpoint

    def metadata_path(self, relpath: str) -> Path:
        return self._layout.metadata_file(relpath)

    def changed_dirs(self, top: str, known: dict[str, bytes]) -> tuple[list[str], set[str]]:
        """Directories below `top` whose fingerprint differs from `known`, and all those seen."""
        changed: list[str] = []
        seen: set[str] = set()
        for directory, fingerprint in store_scan.walk_fingerprints(self._root, top):
            seen.add(directory)
            if known.get(directory) != fingerprint:
                changed.append(directory)
        return changed, seen

    def _sync_tree(self, top: str, changes: Changes) -> None:
        """Diff every directory at or below `top` with its rows; drop rows of vanished ones."""
        changed, seen = self.changed_dirs(top, {})
        for directory in changed:
            self.sync_dir(directory, changes)
        self.drop_dirs(self._cache.dirs_with_files(top) - seen, changes)
        self._cache.forget_tree(top, keep=seen)

    def still_there(self, directories: set[str]) -> set[str]:
        """Those of `directories` a walk would list now (made again since one missed them)."""
        return {d for d in directories if store_scan.reachable(self._root, d)}

    def drop_dirs(self, directories: set[str], changes: Changes) -> None:
        for directory in directories:
            for record in self._cache.files_in_dir(directory).values():
                self._drop(record, changes)
        self._cache.forget_dirs(directories)

    def sync_dir(self, directory: str, changes: Changes) -> None:
        self.sync_dirs([directory], changes)

    def sync_dirs(self, directories: list[str], changes: Changes, read: Reader | None = None) -> None:
        """Diff each directory with its rows, reading new or changed files through `read` (a pool
        of processes in a cold start: see work_pool) in batches; rows are written here."""
        batches = (directories[start:start + _DIRS_PER_BATCH]
                   for start in range(0, len(directories), _DIRS_PER_BATCH))
        for plans, outcomes in self._read_ahead(batches, read or self._read_all):
            rows: list[FileRecord] = []
            for plan in plans:
                for relpath, previous in plan.to_read:
                    self._apply(relpath, previous, next(outcomes), changes, rows)
                for record in plan.old.values():
                    self._drop(record, changes)
            # A directory's fingerprint follows its rows, so a crash leaves it to be diffed
            # again, never marked as read without them.
            self._cache.put_files(rows)
            self._cache.set_dir_fingerprints(
                (plan.directory, store_scan.fingerprint(plan.files)) for plan in plans)
            self._checkpoint(changes.files_read)  # after the rows: a commit holds whole batches

    def _read_ahead(self, batches: Iterator[list[str]], read: Reader,
                    ) -> Iterator[tuple[list[_DirPlan], Iterator[Outcome]]]:
        """Each batch's plans and outcomes, the next batch's reading already begun: with a pool,
        its workers read while this thread writes the rows of the batch before (they would
        wait otherwise). A batch is planned before the one before it is applied, which is
        safe: its directories are its own, and reading writes no rows."""
        pending: tuple[list[_DirPlan], Iterator[Outcome]] | None = None
        for directories in batches:
            plans = [self._plan(d) for d in directories]
            started = (plans, read([relpath for plan in plans for relpath, _previous in plan.to_read]))
            if pending is not None:
                yield pending
            pending = started
        if pending is not None:
            yield pending

    def _plan(self, directory: str) -> _DirPlan:
        files = [f for f in store_scan.list_files(self._root, directory) if _encodable(f[0])]
        old = self._cache.files_in_dir(directory)
        to_read: list[tuple[str, FileRecord | None]] = []
        for name, size, mtime_ns in files:
            relpath = store_scan.join(directory, name)
            previous = old.pop(relpath, None)
            if previous is None or (previous.size, previous.mtime_ns) != (size, mtime_ns):
                to_read.append((relpath, previous))
        return _DirPlan(directory, files, old, to_read)

    def _read_all(self, relpaths: list[str]) -> Iterator[Outcome]:
        return map(self._read, relpaths)

    def update(self, relpath: str, changes: Changes) -> None:
        if any(is_hidden(part) for part in relpath.split("/")):
            return
        if not relpath:
            self._sync_tree("", changes)
            return
        try:
            path = self.store.path_of(relpath)
        except StoreError as error:
            log.warning("ignoring change notice: %s", error)
            return
        if path.is_dir() and not path.is_symlink():
            self._sync_tree(relpath, changes)
        elif path.is_file():
            previous = self._cache.file(relpath)
            if previous is None or (previous.size, previous.mtime_ns) != _size_and_mtime(path):
                self._read_file(relpath, previous, changes)
        else:  # nothing there now: forget the file, or the directory and all below it
            gone = self._cache.file(relpath)
            if gone is not None:
                self._drop(gone, changes)
            self._sync_tree(relpath, changes)
        # The parent's fingerprint no longer describes its rows: make the next rescan diff it.
        self._cache.set_dir_fingerprint(relpath.rpartition("/")[0], b"")

    def _read_file(self, relpath: str, previous: FileRecord | None, changes: Changes) -> None:
        self._apply(relpath, previous, self._read(relpath), changes)

    def _read(self, relpath: str) -> Outcome:
        return work_pool.read_one(self._root, str(self._layout.root), relpath)

    def _apply(self, relpath: str, previous: FileRecord | None, outcome: Outcome, changes: Changes,
               rows: list[FileRecord] | None = None) -> None:
        """Records what `_read` found, in the thread that owns the transaction; into `rows`, to be
        written together, when given."""
        directory = relpath.rpartition("/")[0]
        if outcome is None:
            if previous is not None:
                self._drop(previous, changes)
            return
        if isinstance(outcome, Unservable):
            record = self._broken(relpath, previous, outcome)
        else:
            record = FileRecord(
                relpath=relpath, dir=directory, size=outcome.size, mtime_ns=outcome.mtime_ns,
                project=outcome.project, version=outcome.version, kind=outcome.kind, sha256=outcome.sha256,
                requires_python=outcome.requires_python,
                metadata_sha256=outcome.metadata_sha256 or (hashlib.sha256(outcome.metadata).hexdigest()
                                                            if outcome.metadata is not None else None),
                upload_time_ns=previous.upload_time_ns if previous else outcome.mtime_ns, error=None)
            if outcome.metadata_sha256:  # set by a reader that wrote the metadata file
                changes.metadata_written.add(relpath)
        if rows is None:
            self._cache.put_file(record)
        else:
            rows.append(record)
        for project in {previous.project if previous else None, record.project}:
            if project is not None:
                self._mark(project, changes)
        changes.files_read += 1
        if rows is None:
            self._checkpoint(changes.files_read)

    def _broken(self, relpath: str, previous: FileRecord | None, outcome: Unservable) -> FileRecord:
        """Remembered as broken, so the warning is given once per version of the file; by the
        stat from before the read (see Unservable), so a file read while being written is read
        again once whole."""
        log.warning("not serving %s: %s", relpath, outcome.reason,
                    extra={"FILE": str(self.store.path_of(relpath))})
        return FileRecord(relpath=relpath, dir=relpath.rpartition("/")[0], size=outcome.size,
                          mtime_ns=outcome.mtime_ns, project=None, version=None, kind=None, sha256=None,
                          requires_python=None, metadata_sha256=None,
                          upload_time_ns=previous.upload_time_ns if previous else outcome.mtime_ns,
                          error=outcome.reason)

    def _drop(self, record: FileRecord, changes: Changes) -> None:
        self._cache.delete_file(record.relpath)
        if record.metadata_sha256:
            self.metadata_path(record.relpath).unlink(missing_ok=True)
        if record.project:
            self._mark(record.project, changes)

    def _mark(self, project: NormalizedName, changes: Changes) -> None:
        if project not in changes.dirty:  # once per run is enough: a project has many files
            changes.dirty.add(project)
            self._cache.mark_dirty(project)
