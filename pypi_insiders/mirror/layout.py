"""The mirror's tree under the cache directory: the one place its paths are spelled.

    mirror/LAYOUT                                   "1"; another value is refused
    mirror/pages/<name>.json                        the last good upstream page, normalized
    mirror/files/<sha[:2]>/<sha>/<filename>         verified bytes, never rewritten
    mirror/files/<sha[:2]>/<sha>/<filename>.metadata  its core metadata, verified
    mirror/tmp/<sha>.part                           a download in flight
    mirror/locks/<sha>.lock, page-<name>.lock       flocks: one fetch across processes
    mirror/kept/<sha>                               prefetched: never evicted
    mirror/gone/<name>                              its page was dropped (upstream said 404, or
                                                    the name became local): its files go next sweep
    mirror/stats                                    counters for /status, shared by all processes
    mirror/sweep-wanted                             a worker asks the service's parent for a sweep

Files are keyed by their sha256, so bytes upstream changes land at a new path and old bytes
are never served for a new hash. Every path is built from a checked hash and filename only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from packaging.utils import NormalizedName

from pypi_insiders.errors import InsidersError, InvalidDistributionError
from pypi_insiders.files import atomic_write
from pypi_insiders.store import parse_filename

LAYOUT_VERSION: Final = "1"
METADATA: Final = ".metadata"
_SHA256: Final = re.compile(r"[0-9a-f]{64}")


def is_sha256(text: str) -> bool:
    return bool(_SHA256.fullmatch(text))


def is_distribution(filename: str) -> bool:
    """A wheel or sdist name, plain (no slash, NUL or leading dot): the only files mirrored."""
    if filename.startswith("."):
        return False
    try:
        parse_filename(filename)
    except InvalidDistributionError:
        return False
    return True


@dataclass(frozen=True)
class MirrorLayout:
    root: Path  # <cache>/mirror

    @classmethod
    def under(cls, cache: Path) -> MirrorLayout:
        return cls(cache / "mirror")

    @property
    def pages(self) -> Path:
        return self.root / "pages"

    @property
    def files(self) -> Path:
        return self.root / "files"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    @property
    def kept(self) -> Path:
        return self.root / "kept"

    @property
    def stats(self) -> Path:
        return self.root / "stats"

    @property
    def sweep_request(self) -> Path:
        return self.root / "sweep-wanted"

    def page(self, name: NormalizedName) -> Path:
        return self.pages / f"{name}.json"

    def page_lock(self, name: NormalizedName) -> Path:
        return self.locks / f"page-{name}.lock"

    def file(self, sha256: str, filename: str) -> Path:
        """Only for a checked hash and a distribution filename (or one plus `.metadata`)."""
        return self.files / sha256[:2] / sha256 / filename

    def part(self, sha256: str, suffix: str = "") -> Path:
        return self.tmp / f"{sha256}{suffix}.part"

    def lock(self, sha256: str, suffix: str = "") -> Path:
        return self.locks / f"{sha256}{suffix}.lock"

    def keep_mark(self, sha256: str) -> Path:
        return self.kept / sha256

    @property
    def gone(self) -> Path:
        return self.root / "gone"

    def gone_mark(self, name: NormalizedName) -> Path:
        return self.gone / name

    def ensure(self) -> None:
        """Make the tree; refuse one written by a layout this code does not know."""
        marker = self.root / "LAYOUT"
        try:
            found = marker.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            found = None
        if found is not None and found != LAYOUT_VERSION:
            msg = f"{marker}: mirror layout {found!r}, this version reads {LAYOUT_VERSION!r}; move it away"
            raise InsidersError(msg)
        for directory in (self.pages, self.files, self.tmp, self.locks, self.kept, self.gone):
            directory.mkdir(parents=True, exist_ok=True)
        if found is None:
            atomic_write(marker, f"{LAYOUT_VERSION}\n".encode())
