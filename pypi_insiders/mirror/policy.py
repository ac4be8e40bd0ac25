"""What the mirror may show, decided at answer time: allow and deny lists, and the cooldown.

The cooldown is applied when a page or file is asked for, never when a page is stored: the
cutoff moves with the clock, so a file hidden today appears tomorrow without a new upstream
fetch. As in uv and pip, each *file* is compared (not each release), a file is shown only when
uploaded strictly before `now - cooldown`, and a file without an upload time is hidden unless
`cooldown_unknown = "show"`. Only mirrored names get here: local projects are never held back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from pypi_insiders.config import UpstreamConfig
from pypi_insiders.mirror.page import MirroredFile, format_time

Clock = Callable[[], float]


class MirrorPolicy:
    def __init__(self, settings: UpstreamConfig, clock: Clock = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self._blocked = {canonicalize_name(r.name) for r in settings.deny if not r.specifier}
        self._hidden = [(canonicalize_name(r.name), r.specifier) for r in settings.deny if r.specifier]

    def refused(self, name: NormalizedName) -> str | None:
        """Why this name may not be mirrored at all (a 403, and no upstream request), or None."""
        if name in self._blocked:
            return "blocked by upstream.deny"
        if self.settings.allow and name not in self.settings.allow:
            return "not in upstream.allow"
        return None

    def hidden(self, name: NormalizedName, item: MirroredFile) -> str | None:
        """Why this file is not shown now (its URLs answer 404), or None."""
        for project, specifier in self._hidden:
            if project == name and _contains(specifier, item.version):
                return f"version {item.version} denied by upstream.deny"
        cooldown = self.settings.cooldown
        if cooldown <= 0 or name in self.settings.cooldown_exempt:
            return None
        uploaded = item.uploaded
        cutoff = self.clock() - cooldown
        if uploaded is None:
            return None if self.settings.cooldown_unknown == "show" else "no upload time (cooldown)"
        if uploaded >= cutoff:
            return f"within the cooldown until {format_time(uploaded + cooldown)}"
        return None

    def visible(self, name: NormalizedName, files: Iterable[MirroredFile]) -> list[MirroredFile]:
        return [item for item in files if self.hidden(name, item) is None]


def _contains(specifier: SpecifierSet, version: str) -> bool:
    try:
        return specifier.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False
