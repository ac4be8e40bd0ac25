"""The mirror as one object: its tree, pages, downloads, policy and counters, for one config."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from packaging.utils import NormalizedName

from pypi_insiders.config import UpstreamConfig
from pypi_insiders.http_client import HttpClient
from pypi_insiders.mirror.download import Downloads
from pypi_insiders.mirror.layout import MirrorLayout
from pypi_insiders.mirror.page import MirroredFile
from pypi_insiders.mirror.pages import PageSource
from pypi_insiders.mirror.policy import Clock, MirrorPolicy
from pypi_insiders.mirror.stats import MirrorStats
from pypi_insiders.mirror.sweep import Sweeper, ask_for_sweep


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

    def status(self) -> dict[str, Any]:
        used, count = self.sweeper.usage()
        try:
            free = shutil.disk_usage(self.layout.root).free
        except OSError:
            free = None
        return {"bytes_used": used, "files": count, "max_size": self.settings.max_size or None,
                "min_free": self.settings.min_free, "free_disk": free,
                "offline": self.settings.offline, **self.stats.as_status()}
