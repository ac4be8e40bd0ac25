"""The pages that list projects: the root list (HTML and JSON) and the landing page.

Written only when the set of served projects changes (the root list) or any project was
rendered (the landing page's totals and newest files), never for every file.
"""

from __future__ import annotations

from collections.abc import Sequence

from packaging.utils import NormalizedName

from pypi_insiders.files import atomic_write
from pypi_insiders.index import pages
from pypi_insiders.index.layout import SUFFIXES, IndexLayout
from pypi_insiders.index.metadata_cache import Cache

LATEST = 20  # newest files on the landing page


def root_list_missing(layout: IndexLayout) -> bool:
    return not all(layout.root_list(suffix).exists() for suffix in SUFFIXES)


def write_root_list(layout: IndexLayout, served: Sequence[NormalizedName]) -> None:
    html, document = pages.root_pages(list(served))
    layout.simple.mkdir(parents=True, exist_ok=True)
    atomic_write(layout.root_list("json"), document, durable=False)
    atomic_write(layout.root_list("html"), html, durable=False)


def write_landing_page(layout: IndexLayout, cache: Cache) -> None:
    projects, files = cache.totals()
    atomic_write(layout.landing_page, pages.home_page(projects, files, cache.latest_files(LATEST)),
                 durable=False)
