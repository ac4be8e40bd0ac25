"""The mirror as one object: its tree, pages, downloads, policy and counters, for one config;
and its `/status` section (`scan`, `counts`, `status`), computed by the service's parent."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import unquote

from packaging.utils import NormalizedName

from pypi_insiders.config import UpstreamConfig
from pypi_insiders.http_client import HttpClient, split_credentials
from pypi_insiders.mirror.download import Downloads
from pypi_insiders.mirror.layout import MirrorLayout
from pypi_insiders.mirror.page import MirroredFile
from pypi_insiders.mirror.pages import PageSource
from pypi_insiders.mirror.policy import Clock, MirrorPolicy
from pypi_insiders.mirror.stats import Counts, MirrorStats, read_counts
from pypi_insiders.mirror.sweep import Sweeper, ask_for_sweep
from pypi_insiders.status_report import MirrorStatus
from pypi_insiders.wording import utc

_MASK_FROM: Final = 4  # shorter user names or passwords would mask every such letter pair


class Mirror:
    def __init__(self, cache: Path, settings: UpstreamConfig, client: HttpClient, *,
                 clock: Clock | None = None) -> None:
        self.layout = MirrorLayout.under(cache)
        self.layout.ensure()
        self.stats = MirrorStats(self.layout.stats)
        self.client = client
        self._clock = clock
        self.pages = PageSource(self.layout, settings, client, self.stats)
        self.downloads = Downloads(self.layout, settings, client, self.stats)
        self.sweeper = Sweeper(self.layout, settings)
        self.downloads.on_stored.append(self.sweeper.evict_if_over)
        self.sweeper.clean_tmp()  # a dead leader's .part: never served, now never kept
        self.reconfigure(settings)

    def reconfigure(self, settings: UpstreamConfig) -> None:
        """A new URL makes the stored pages meaningless; files are keyed by hash and stay."""
        old = self.pages.settings
        if settings.url != old.url and old.url is not None:
            for page in self.layout.pages.glob("*.json"):
                page.unlink(missing_ok=True)
        if settings.max_size and (not old.max_size or settings.max_size < old.max_size):
            ask_for_sweep(self.layout)  # a lower cap: the service's parent evicts now, not in 5 min
        self.settings = settings
        self.policy = MirrorPolicy(settings, self._clock) if self._clock else MirrorPolicy(settings)
        self.pages.settings = self.downloads.settings = self.sweeper.settings = settings

    def visible(self, name: NormalizedName, files: tuple[MirroredFile, ...]) -> list[MirroredFile]:
        """What a page lists now: the policy's choice, and offline only what is on disk."""
        shown = self.policy.visible(name, files)
        if self.settings.offline:
            shown = [f for f in shown if self.layout.file(f.sha256, f.filename).is_file()]
        return shown


@dataclass(frozen=True)
class Usage:
    """The mirror's disk at one moment: what a scan of every kept file found, and the free space."""

    bytes_used: int
    files: int
    free_disk: int | None
    at: float


def scan(cache: Path, settings: UpstreamConfig) -> Usage:
    """Stats every kept file (a second or more on a large mirror): never on a request; the
    parent's status thread calls it, at most every few seconds (`service/status_refresh.py`)."""
    layout = MirrorLayout.under(cache)
    used, count = Sweeper(layout, settings).usage()
    try:
        free: int | None = shutil.disk_usage(layout.root).free
    except OSError:
        free = None
    return Usage(used, count, free, time.time())


def counts(cache: Path) -> Counts:
    """The counters every serving process adds to (`mirror/stats`), read-only and cheaply."""
    return read_counts(MirrorLayout.under(cache).stats)


def status(settings: UpstreamConfig, usage: Usage, counted: Counts) -> MirrorStatus:
    """The section `/status` and `pypi-insiders status` show, from a scan and the counters."""
    return MirrorStatus(
        bytes_used=usage.bytes_used, files=usage.files, max_size=settings.max_size or None,
        min_free=settings.min_free, free_disk=usage.free_disk, offline=settings.offline,
        hits=counted.hits, misses=counted.misses, bytes_from_upstream=counted.bytes_upstream,
        stale_pages_served=counted.stale_pages,
        last_upstream_error=_masked(counted.last_error, settings.url),
        last_upstream_error_at=utc(counted.last_error_at) if counted.last_error_at else None,
        scanned_at=utc(usage.at))


def scanned_now(cache: Path, settings: UpstreamConfig) -> MirrorStatus:
    """The section with a scan made now: `pypi-insiders status`, one scan per command."""
    return status(settings, scan(cache, settings), counts(cache))


def _masked(text: str | None, url: str | None) -> str | None:
    """The error without upstream's credentials. Errors name URLs by `display_url` already;
    this holds even for a message worded elsewhere (a library's exception text)."""
    if not text or not url:
        return text
    try:
        _plain, credentials = split_credentials(url)
    except ValueError:
        return text
    if credentials is None:
        return text
    for secret in (credentials.password, credentials.username):
        for form in {secret, unquote(secret)}:
            if len(form) >= _MASK_FROM:
                text = text.replace(form, "***")
    return text
