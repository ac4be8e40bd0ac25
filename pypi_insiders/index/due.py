"""Which projects must be rendered again although none of their files changed.

A project is due when a run left it dirty (interrupted), when its page settings (yanks,
tracks) differ from those it was rendered with, when its pages are missing from disk, or,
for every project, when the page format changed or the metadata files were deleted.
"""

from __future__ import annotations

import os

from packaging.utils import NormalizedName

from pypi_insiders.index.layout import IndexLayout
from pypi_insiders.index.metadata_cache import Cache
from pypi_insiders.index.page_settings import PageSettings

# Bump when the pages change shape: every project is then rendered again (2: /project/ links).
PAGE_FORMAT = "2"


def format_changed(cache: Cache) -> bool:
    return cache.get_meta("page_format") != PAGE_FORMAT


def mark_format_current(cache: Cache, layout: IndexLayout) -> None:
    """Only a full run has rendered every project in the current format."""
    cache.set_meta("page_format", PAGE_FORMAT)
    layout.packages.mkdir(parents=True, exist_ok=True)  # its absence means "rebuild metadata"


def settings_changed(cache: Cache, settings: PageSettings) -> set[NormalizedName]:
    return {name for name, (_files, key) in cache.project_state().items() if key != settings.key(name)}


def stale_projects(cache: Cache, layout: IndexLayout, settings: PageSettings) -> set[NormalizedName]:
    stale = cache.dirty_projects()
    everything = format_changed(cache) or not layout.packages.is_dir()
    simple = str(layout.simple)
    for name, (files, key) in cache.project_state().items():
        if everything or key != settings.key(name) or (files > 0 and not _has_pages(simple, name)):
            stale.add(name)
    return stale


def _has_pages(simple: str, name: NormalizedName) -> bool:
    """Strings and os.stat: this runs for every project at every rescan."""
    base = f"{simple}/{name}/index."
    try:
        os.stat(base + "html")  # noqa: PTH116 - a Path per project costs more than the stat
        os.stat(base + "json")  # noqa: PTH116
    except FileNotFoundError:
        return False
    return True
