"""The generator's memory of the store: what each file was when last read, in sqlite.

Reading a distribution (hashing it, opening its archive) is the expensive part of generation,
so each file is read once and remembered by (relpath, size, mtime_ns); each directory is
remembered by a fingerprint of its listing, so a rescan of an unchanged store compares
fingerprints instead of rows. Everything here is derived from the store: deleting the
database only costs one cold generation. Not thread-safe by itself: the generator serialises
every use behind its lock.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import NormalizedName

from pypi_insiders.files import exclusive_lock

log = logging.getLogger(__name__)

_SCHEMA_VERSION = "2"
_WAL_BYTES = 1024 * 1024
_WAL_PAGES = _WAL_BYTES // 4096  # sqlite's default page size
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    relpath TEXT PRIMARY KEY,
    dir TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    project TEXT,
    version TEXT,
    kind TEXT,
    sha256 TEXT,
    requires_python TEXT,
    metadata_sha256 TEXT,
    upload_time_ns INTEGER NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS files_dir ON files (dir);
CREATE INDEX IF NOT EXISTS files_project ON files (project);
CREATE TABLE IF NOT EXISTS dirs (dir TEXT PRIMARY KEY, fingerprint BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS projects (
    name TEXT PRIMARY KEY,
    files INTEGER NOT NULL,
    yank TEXT NOT NULL,
    dirty INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS files_upload_time ON files (upload_time_ns);
"""
_SELECT_FILES = ("SELECT relpath, dir, size, mtime_ns, project, version, kind, sha256, requires_python, "
                 "metadata_sha256, upload_time_ns, error FROM files ")
_INSERT_FILE = "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def _row(record: FileRecord) -> tuple[object, ...]:
    return (record.relpath, record.dir, record.size, record.mtime_ns, record.project,
            record.version, record.kind, record.sha256, record.requires_python,
            record.metadata_sha256, record.upload_time_ns, record.error)


@dataclass(frozen=True, kw_only=True)
class FileRecord:
    """One store file as last read. `error` set means it is broken and not served."""

    relpath: str
    dir: str
    size: int
    mtime_ns: int
    project: NormalizedName | None
    version: str | None
    kind: str | None
    sha256: str | None
    requires_python: str | None
    metadata_sha256: str | None
    upload_time_ns: int
    error: str | None

    @property
    def filename(self) -> str:
        return self.relpath.rpartition("/")[2]


_UNDER = " WHERE dir = ? OR (dir >= ? AND dir < ?)"


def _below(query: str, top: str) -> tuple[str, tuple[str, ...]]:
    """`query` limited to `top` and the directories below it ("0" sorts right after "/")."""
    return (query + _UNDER, (top, top + "/", top + "0")) if top else (query, ())


def _record(row: tuple[Any, ...]) -> FileRecord:
    """A row of `_SELECT_FILES`, its columns in that order."""
    (relpath, directory, size, mtime_ns, project, version, kind, sha256, requires_python, metadata_sha256,
     upload_time_ns, error) = row
    return FileRecord(relpath=relpath, dir=directory, size=size, mtime_ns=mtime_ns, project=project,
                      version=version, kind=kind, sha256=sha256, requires_python=requires_python,
                      metadata_sha256=metadata_sha256, upload_time_ns=upload_time_ns, error=error)


class Cache:
    """The sqlite file at `<paths.cache>/index.sqlite3`; every write is in the caller's transaction."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        try:
            self.db = self._open()
        except sqlite3.DatabaseError as error:  # a damaged cache is rebuilt, never fatal
            log.warning("%s is unreadable (%s); rebuilding it from the store", path, error,
                        extra={"FILE": str(path)})
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            self.db = self._open()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: no fsync per commit, still never corrupt
            db.execute("PRAGMA temp_store=MEMORY")
            # A cold start writes for minutes: checkpoint every MiB and cut the WAL back to one
            # when it restarts, or it grows to 4 MiB and more and stays at its high-water mark.
            db.execute(f"PRAGMA wal_autocheckpoint={_WAL_PAGES}")
            db.execute(f"PRAGMA journal_size_limit={_WAL_BYTES}")
            self.db = db
            self._migrate()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _migrate(self) -> None:
        """An unknown schema is dropped, not migrated: everything in it can be re-derived."""
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        if self.get_meta("schema") != _SCHEMA_VERSION:
            self.db.executescript("DROP TABLE IF EXISTS files; DROP TABLE IF EXISTS dirs; "
                                  "DROP TABLE IF EXISTS projects; DELETE FROM meta;")
            self.db.executescript(_SCHEMA)
            self.set_meta("schema", _SCHEMA_VERSION)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Held across one whole update, so `pypi-insiders generate` and a running service take
        turns instead of one failing with "database is locked" behind the other's long transaction."""
        with exclusive_lock(Path(f"{self.path}.lock")):
            yield

    def begin(self) -> None:
        self.db.execute("BEGIN")

    def commit(self) -> None:
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    def shrink_wal(self) -> None:
        """Fold the WAL into the database and truncate it: otherwise it keeps the size of the
        largest transaction it held (megabytes after a cold start) for as long as the service runs."""
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    # ----------------------------------------------------------------- meta

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # ----------------------------------------------------------------- directories

    def dir_fingerprints(self) -> dict[str, bytes]:
        return dict(self.db.execute("SELECT dir, fingerprint FROM dirs"))

    def set_dir_fingerprint(self, directory: str, fingerprint: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO dirs VALUES (?, ?)", (directory, fingerprint))

    def forget_dirs(self, directories: Iterable[str]) -> None:
        self.db.executemany("DELETE FROM dirs WHERE dir = ?", ((d,) for d in directories))

    def forget_tree(self, top: str, keep: set[str]) -> None:
        """Forget fingerprints of directories at or below `top` except those in `keep`."""
        rows = self.db.execute(*_below("SELECT dir FROM dirs", top))
        gone = [str(d) for (d,) in rows if d not in keep]
        self.forget_dirs(gone)

    # ----------------------------------------------------------------- files

    def files_in_dir(self, directory: str) -> dict[str, FileRecord]:
        rows = self.db.execute(_SELECT_FILES + "WHERE dir = ?", (directory,))
        return {row[0]: _record(row) for row in rows}

    def dirs_with_files(self, top: str) -> set[str]:
        """Directories at or below `top` ("" is the whole store) that hold remembered files."""
        rows = self.db.execute(*_below("SELECT DISTINCT dir FROM files", top))
        return {str(d) for (d,) in rows}

    def file(self, relpath: str) -> FileRecord | None:
        row = self.db.execute(_SELECT_FILES + "WHERE relpath = ?", (relpath,)).fetchone()
        return None if row is None else _record(row)

    def put_file(self, record: FileRecord) -> None:
        self.db.execute(_INSERT_FILE, _row(record))

    def put_files(self, records: Iterable[FileRecord]) -> None:
        """Many rows in one statement: a cold start writes 200,000 of them."""
        self.db.executemany(_INSERT_FILE, map(_row, records))

    def set_dir_fingerprints(self, fingerprints: Iterable[tuple[str, bytes]]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO dirs VALUES (?, ?)", fingerprints)

    def delete_file(self, relpath: str) -> None:
        self.db.execute("DELETE FROM files WHERE relpath = ?", (relpath,))

    def project_files(self, project: NormalizedName) -> list[FileRecord]:
        """The servable files of one project, broken ones left out."""
        rows = self.db.execute(
            _SELECT_FILES + "WHERE project = ? AND error IS NULL", (project,))
        return [_record(row) for row in rows]

    def latest_files(self, limit: int) -> list[FileRecord]:
        rows = self.db.execute(_SELECT_FILES + "WHERE error IS NULL "
                               "ORDER BY upload_time_ns DESC, relpath LIMIT ?", (limit,))
        return [_record(row) for row in rows]

    # ----------------------------------------------------------------- projects

    def served_projects(self) -> Iterator[NormalizedName]:
        """Names of projects with at least one servable file, sorted."""
        for (name,) in self.db.execute("SELECT name FROM projects WHERE files > 0 ORDER BY name"):
            yield NormalizedName(name)  # written normalized: the names come from parse_filename

    def project_state(self) -> dict[NormalizedName, tuple[int, str]]:
        """Every known project: (number of served files, fingerprint of its yank settings)."""
        return {NormalizedName(name): (int(files), str(yank))
                for name, files, yank in self.db.execute("SELECT name, files, yank FROM projects")}

    def served_count(self, name: NormalizedName) -> int:
        row = self.db.execute("SELECT files FROM projects WHERE name = ?", (name,)).fetchone()
        return 0 if row is None else int(row[0])

    def mark_dirty(self, name: NormalizedName) -> None:
        """Recorded in the same transaction as the file rows, so a crash cannot lose the change."""
        self.db.execute("INSERT INTO projects VALUES (?, 0, '', 1) "
                        "ON CONFLICT (name) DO UPDATE SET dirty = 1", (name,))

    def dirty_projects(self) -> set[NormalizedName]:
        rows = self.db.execute("SELECT name FROM projects WHERE dirty = 1")
        return {NormalizedName(name) for (name,) in rows}

    def set_project(self, name: NormalizedName, files: int, yank: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO projects VALUES (?, ?, ?, 0)", (name, files, yank))

    def broken_count(self) -> int:
        """Files in the store that are not served (each was warned about when first read)."""
        (count,) = self.db.execute("SELECT COUNT(*) FROM files WHERE error IS NOT NULL").fetchone()
        return int(count)

    def totals(self) -> tuple[int, int]:
        """(projects served, files served) for the human page; cheap, from the projects table."""
        projects, files = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(files), 0) FROM projects WHERE files > 0").fetchone()
        return int(projects), int(files)
