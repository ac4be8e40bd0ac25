"""Configuration: one TOML file (plus repository drop-ins) parsed once into frozen dataclasses.

Nothing else in the package reads TOML or the environment for settings. Every problem is
collected and reported together, each with the file and dotted key at fault, so an
administrator fixes a config in one pass instead of one error per restart.

The package: `model` (the dataclasses), `layout` (which file, and where each piece lives by
default), `table` (validation helpers), `sections` and `repo_tables` (the parsers), `loader`.
"""

from __future__ import annotations

from pypi_insiders.config.layout import SYSTEM_CONFIG, choose_config, layout_for
from pypi_insiders.config.loader import current_repos, from_mapping, load, with_overrides, with_store
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
)
from pypi_insiders.config.repo_tables import parse_repo
from pypi_insiders.config.table import check_http_url, parse_listen

__all__ = [
    "DEFAULT_PORT", "FALLBACKS", "SYSTEM_CONFIG", "AccessConfig", "Anonymous", "BuildPolicy", "Config",
    "Fallback", "FetchConfig", "IndexConfig", "PathsConfig", "PublishTarget", "RepoConfig", "SandboxKind",
    "ServerConfig", "UploadConfig",
    "UpstreamConfig", "check_http_url", "choose_config", "current_repos", "from_mapping", "layout_for",
    "load", "parse_listen", "parse_repo", "with_overrides", "with_store",
]
