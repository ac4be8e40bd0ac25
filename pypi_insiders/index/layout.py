"""The on-disk layout of the generated index: the contract between the generator and its readers.

The generator writes this tree, the web app (or nginx, or a CDN) serves it as it is, and
everything in it can be deleted and rebuilt from the store:

    <index>/index.html                       the human landing page
    <index>/simple/index.{html,json}         the root list (PEP 503 / PEP 691)
    <index>/simple/<name>/index.{html,json}  one project's page, <name> normalized
    <index>/packages/<relpath>.metadata      a file's core metadata (PEP 658 / 714)

Files themselves are served from the store under `/packages/<relpath>`, the same URL prefix
as their metadata, so a project page links both with one relative path that works behind any
prefix: `../../packages/<relpath>`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from packaging.utils import NormalizedName

Suffix = Literal["html", "json"]
SUFFIXES: Final[tuple[Suffix, ...]] = ("html", "json")
SIMPLE_URL: Final = "/simple/"
PACKAGES_URL: Final = "/packages/"
METADATA_SUFFIX: Final = ".metadata"
FILE_LINK_PREFIX: Final = "../../packages/"  # from <index>/simple/<name>/ to PACKAGES_URL


def page_name(suffix: Suffix) -> str:
    return f"index.{suffix}"


@dataclass(frozen=True)
class IndexLayout:
    root: Path

    @property
    def landing_page(self) -> Path:
        return self.root / "index.html"

    @property
    def simple(self) -> Path:
        return self.root / "simple"

    @property
    def packages(self) -> Path:
        return self.root / "packages"

    def root_list(self, suffix: Suffix) -> Path:
        return self.simple / page_name(suffix)

    def project_dir(self, name: NormalizedName) -> Path:
        return self.simple / name

    def project_page(self, name: NormalizedName, suffix: Suffix) -> Path:
        return self.simple / name / page_name(suffix)

    def metadata_file(self, relpath: str) -> Path:
        return self.packages / f"{relpath}{METADATA_SUFFIX}"

    def simple_prefix(self) -> str:
        """`<index>/simple/` as a string, for the hot path that joins names onto it."""
        return os.path.join(self.simple, "")  # noqa: PTH118 - a str prefix, on purpose
