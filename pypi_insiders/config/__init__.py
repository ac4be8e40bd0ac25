"""Configuration: one TOML file (plus repository drop-ins) parsed once into frozen dataclasses.

Nothing else in the package reads TOML or the environment for settings. Every problem is
collected and reported together, each with the file and dotted key at fault, so an
administrator fixes a config in one pass instead of one error per restart.

The package: `model` (the dataclasses), `locations` (which file, and where each piece lives by
default), `table` (validation helpers), `sections` and `repo_tables` (the parsers), `loader`.

To add a key to a section: a field with its default in that section's class in `model` (the
classes are keyword-only, so a field goes where it reads best); one line in the section's
parser in `sections` (`t.get("key", type, SectionConfig.key, check)`: the default is read from
the class, never written again), and the field passed by name; a commented line in the
conffile `etc/pypi-insiders/config.toml`; a test of a bad value in `tests/test_config.py`.
A new section is a class in `model`, a field of `Config`, a parser in `sections` called from
`loader.from_mapping`, and its name in `loader._SECTIONS`. A state or cache file it needs is
named in `state_layout`.
"""

from __future__ import annotations

from pypi_insiders.config.loader import current_repos, from_mapping, load, with_overrides, with_store
from pypi_insiders.config.locations import SYSTEM_CONFIG, choose_config, locations_for, reads_system_as_group
from pypi_insiders.config.model import (
    DEFAULT_PORT,
    FALLBACKS,
    AccessConfig,
    Anonymous,
    BuildPolicy,
    Config,
    Fallback,
    FetchConfig,
    IndexConfig,
    PathsConfig,
    PublishTarget,
    RepoConfig,
    SandboxKind,
    ServerConfig,
    UploadConfig,
    UpstreamConfig,
    WebhooksConfig,
)
from pypi_insiders.config.repo_tables import parse_repo
from pypi_insiders.config.table import check_http_url, parse_listen

__all__ = [
    "DEFAULT_PORT", "FALLBACKS", "SYSTEM_CONFIG", "AccessConfig", "Anonymous", "BuildPolicy", "Config",
    "Fallback", "FetchConfig", "IndexConfig", "PathsConfig", "PublishTarget", "RepoConfig", "SandboxKind",
    "ServerConfig", "UploadConfig", "UpstreamConfig", "WebhooksConfig",
    "check_http_url", "choose_config", "current_repos", "from_mapping", "load",
    "locations_for", "parse_listen", "parse_repo", "reads_system_as_group", "with_overrides", "with_store",
]
