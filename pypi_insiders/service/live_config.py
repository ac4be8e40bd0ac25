"""What a reload (SIGHUP) changes: the file's settings, minus command-line flags and restart-only keys.

Every process keeps two configs: the file as read (to notice what changed) and the effective
one (the file plus `--upstream` and the like). A broken file keeps the running config.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from pypi_insiders import config as config_module
from pypi_insiders.config import Config
from pypi_insiders.errors import ConfigError
from pypi_insiders.http_client import display_url

log = logging.getLogger(__name__)


def read_file(config_arg: str | None, fallback: Config | None) -> Config:
    """The config as the file says, before command-line overrides; `fallback` if unreadable at start."""
    try:
        return config_module.load(config_arg)
    except ConfigError:
        if fallback is None:
            raise
        return fallback


def keep_overrides(old_file: Config, effective: Config, new_file: Config, *, warn: bool) -> Config:
    """Command-line flags keep winning over the file; what needs a restart keeps its old value."""
    upstream = new_file.upstream
    if effective.upstream.url_source == "--upstream":
        upstream = replace(upstream, url=effective.upstream.url, url_source="--upstream")
    if effective.upstream.fallback != old_file.upstream.fallback:
        upstream = replace(upstream, fallback=effective.upstream.fallback)
    if warn and (new_file.server, new_file.paths) != (old_file.server, old_file.paths):
        log.warning("reload: the [server] settings and paths change only with a restart")
    return replace(new_file, server=effective.server, paths=effective.paths, upstream=upstream)


def public(url: str | None) -> str:
    """A URL fit for a log line: credentials removed."""
    return display_url(url) if url else "none"
