"""One batch of projects rendered again: their metadata files, then their two pages.

The generator decides which projects are due and holds the lock; this module turns the cache's
rows into files on disk. The disk and CPU work (metadata files rebuilt after the index was
deleted, rendering and writing pages) goes to the run's Work, a pool of processes in a big run;
the sqlite cache is only touched from the calling thread. Metadata files are in place before
the pages that link them are written.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from packaging.utils import NormalizedName

from pypi_insiders.index.cache_sync import Changes
from pypi_insiders.index.layout import SUFFIXES, IndexLayout
from pypi_insiders.index.metadata_cache import Cache, FileRecord
from pypi_insiders.index.page_settings import PageSettings
from pypi_insiders.index.work_pool import PageJob, Work

log = logging.getLogger(__name__)


@dataclass
class Run(Changes):
    """One generator run's tally: what the store sync found, and what rendering did."""

    served: set[str] = field(default_factory=set)
    regenerated: int = 0
    root_changed: bool = False


class ProjectRenderer:
    def __init__(self, cache: Cache, layout: IndexLayout) -> None:
        self._cache = cache
        self._layout = layout

    def render(self, names: Iterable[NormalizedName], settings: PageSettings, run: Run,
               work: Work) -> None:
        chosen = {name: self._deduplicate(self._cache.project_files(name)) for name in names}
        # The metadata file is derived too: rebuilt where the index was deleted under us.
        to_check = [r for records in chosen.values() for r in records
                    if r.metadata_sha256 and r.relpath not in run.metadata_written]  # just written
        lost = {r.relpath for r, there in zip(
            to_check, work.rebuild([(r.relpath, r.metadata_sha256 or "") for r in to_check]),
            strict=True) if not there}
        jobs: list[PageJob] = []
        for name, records in chosen.items():
            kept = [replace(r, metadata_sha256=None) if r.relpath in lost else r for r in records]
            job = self._pages(name, kept, settings, run)
            if job is not None:
                jobs.append(job)
        work.write_pages(jobs)

    def _pages(self, name: NormalizedName, records: list[FileRecord], settings: PageSettings,
               run: Run) -> PageJob | None:
        """One project's pages to write (None when it has no files left: its pages are removed)."""
        was_served = self._cache.served_count(name) > 0
        directory = self._layout.project_dir(name)
        job = None
        if records:
            job = PageJob(name, records, settings.yank_reasons(name), settings.tracks.get(name))
            run.served.add(name)
        else:
            for suffix in SUFFIXES:
                self._layout.project_page(name, suffix).unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # gone already, or holds a stranger's file: leave it
                directory.rmdir()
        self._cache.set_project(name, len(records), settings.key(name))
        run.root_changed |= was_served != bool(records)
        run.regenerated += 1
        return job

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
