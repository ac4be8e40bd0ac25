"""One batch of projects rendered again: their metadata files, then their two pages.

The generator decides which projects are due and holds the lock; this module turns the cache's
rows into files on disk. Disk work (metadata files rebuilt after the index was deleted, page
writes) goes to the reader threads when the generator lends them; the sqlite cache is only
touched from the calling thread. Metadata files are written before the pages that link them.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from pathlib import Path

from packaging.utils import NormalizedName

from pypi_insiders.errors import InvalidDistributionError
from pypi_insiders.files import write_derived
from pypi_insiders.index import pages
from pypi_insiders.index.cache_sync import Changes, StoreSync
from pypi_insiders.index.layout import SUFFIXES, IndexLayout
from pypi_insiders.index.metadata_cache import Cache, FileRecord
from pypi_insiders.index.page_settings import PageSettings
from pypi_insiders.metadata import read_core_metadata
from pypi_insiders.store import Store

log = logging.getLogger(__name__)


@dataclass
class Run(Changes):
    """One generator run's tally: what the store sync found, and what rendering did."""

    served: set[str] = field(default_factory=set)
    regenerated: int = 0
    root_changed: bool = False


class ProjectRenderer:
    def __init__(self, store: Store, cache: Cache, sync: StoreSync, layout: IndexLayout) -> None:
        self._store = store
        self._cache = cache
        self._sync = sync
        self._layout = layout

    def render(self, names: Iterable[NormalizedName], settings: PageSettings, run: Run,
               readers: Executor | None) -> None:
        chosen = {name: self._deduplicate(self._cache.project_files(name)) for name in names}
        mapper = readers.map if readers is not None else map
        flat = [record for records in chosen.values() for record in records]
        to_check = [r for r in flat if r.relpath not in run.metadata_written]  # just written: there
        checked = {r.relpath: r for r in flat}
        checked.update(zip((r.relpath for r in to_check), mapper(self._with_metadata, to_check), strict=True))
        writes: list[tuple[Path, bytes]] = []
        for name, records in chosen.items():
            writes += self._pages(name, [checked[r.relpath] for r in records], settings, run)
        for _written in mapper(_write_page, writes):
            pass

    def _pages(self, name: NormalizedName, records: list[FileRecord], settings: PageSettings,
               run: Run) -> list[tuple[Path, bytes]]:
        """One project's pages to write (none when it has no files left: its pages are removed)."""
        was_served = self._cache.served_count(name) > 0
        directory = self._layout.project_dir(name)
        writes: list[tuple[Path, bytes]] = []
        if records:
            html, document = pages.project_pages(name, records, settings.yank_reasons(name),
                                                 settings.tracks.get(name))
            writes = [(self._layout.project_page(name, "json"), document),
                      (self._layout.project_page(name, "html"), html)]
            run.served.add(name)
        else:
            for suffix in SUFFIXES:
                self._layout.project_page(name, suffix).unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # gone already, or holds a stranger's file: leave it
                directory.rmdir()
        self._cache.set_project(name, len(records), settings.key(name))
        run.root_changed |= was_served != bool(records)
        run.regenerated += 1
        return writes

    @staticmethod
    def _deduplicate(records: list[FileRecord]) -> list[FileRecord]:
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
            raw = read_core_metadata(self._store.path_of(record.relpath), record.filename).raw
        except (InvalidDistributionError, OSError):
            raw = b""
        if hashlib.sha256(raw).hexdigest() != record.metadata_sha256:
            return replace(record, metadata_sha256=None)  # changed under us; the next scan reads it
        self._sync.write_metadata(record.relpath, raw)
        return record


def _write_page(item: tuple[Path, bytes]) -> None:
    """In a writer thread; the project's directory is made there too, on its first page."""
    write_derived(*item)
