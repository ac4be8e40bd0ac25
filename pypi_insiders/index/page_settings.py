"""What a project's pages depend on besides its files: yank reasons and PEP 708 `tracks`.

Yanks come from the config's `[yank.PROJECT]` tables and from `<state>/yanked.json`
(`index.yanks`, changed at run time); the config's reason wins for a version in both.

The cache keeps a key of these per project, so a reload renders again exactly the projects
whose settings changed, and a restart with changed settings does the same.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from packaging.utils import NormalizedName

from pypi_insiders.config import Config
from pypi_insiders.index import pages


@dataclass(frozen=True)
class PageSettings:
    """`yanked`: project -> version -> reason; `tracks`: project -> its upstream page."""

    yanked: Mapping[NormalizedName, Mapping[str, str]] = field(default_factory=dict)
    tracks: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, yanked: Mapping[NormalizedName, Mapping[str, str]],
           tracks: Mapping[str, str] | None = None) -> PageSettings:
        table = {project: pages.yank_reasons(versions) for project, versions in yanked.items() if versions}
        return cls(table, dict(tracks or {}))

    @classmethod
    def from_config(cls, config: Config) -> PageSettings:
        return cls.of(config.index.yanked, tracked(config))

    def with_yanks(self, more: Mapping[NormalizedName, Mapping[str, str]]) -> PageSettings:
        """These settings plus yanks (normalized versions) from the state file."""
        table = {name: dict(versions) for name, versions in more.items() if versions}
        for name, versions in self.yanked.items():
            table.setdefault(name, {}).update(versions)
        return PageSettings(table, self.tracks)

    def yank_reasons(self, name: NormalizedName) -> Mapping[str, str]:
        return self.yanked.get(name, {})

    def key(self, name: NormalizedName) -> str:
        """A change of this string renders the project's pages again."""
        reasons = self.yanked.get(name)
        key = json.dumps(sorted(reasons.items())) if reasons else ""
        tracks = self.tracks.get(name)
        return f"{key}\ntracks={tracks}" if tracks else key


def tracked(config: Config) -> dict[str, str]:
    """`[access] public_projects` -> their upstream page (without any credentials in its URL)."""
    if not config.upstream.url:
        return {}
    parts = urlsplit(config.upstream.url)
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    base = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return {name: f"{base}{name}/" for name in sorted(config.access.public_projects)}
