"""What a reload (SIGHUP) changes: the file's settings, minus command-line flags and restart-only keys.

Every process keeps two configs: the file as read (to notice what changed) and the effective
one (the file plus `--upstream` and the like). A broken file keeps the running config.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, replace
from pathlib import Path

from pypi_insiders import config as config_module
from pypi_insiders import pipconf
from pypi_insiders.config import Config
from pypi_insiders.errors import ConfigError
from pypi_insiders.files import atomic_write
from pypi_insiders.http_client import display_url
from pypi_insiders.state_layout import StateLayout

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
    listen = (effective.server.host, effective.server.port)  # `--listen` and restart-only: kept
    if upstream.url_source not in ("config", "--upstream") and listen != (new_file.server.host,
                                                                           new_file.server.port):
        found = pipconf.configured_index_url(listen=listen)  # never this index itself
        upstream = replace(upstream, url=found.url, url_source=found.source, skipped=found.skipped)
    if effective.upstream.url_source == "--upstream":
        upstream = replace(upstream, url=effective.upstream.url, url_source="--upstream")
    if effective.upstream.fallback != old_file.upstream.fallback:
        upstream = replace(upstream, fallback=effective.upstream.fallback)
    if warn and (new_file.server, new_file.paths) != (old_file.server, old_file.paths):
        log.warning("reload: the [server] settings and paths change only with a restart")
    return replace(new_file, server=effective.server, paths=effective.paths, upstream=upstream)




def restart_only(file_config: Config) -> dict[str, str]:
    """The settings a reload keeps as they were at start ([server] and the paths), by dotted key."""
    server = {f"server.{key}": str(value) for key, value in asdict(file_config.server).items()
              if key not in ("host", "port")}
    server["server.listen"] = f"{file_config.server.host}:{file_config.server.port}"  # the file's key
    paths = {f"paths.{'data' if key == 'state' else key}": str(value)
             for key, value in asdict(file_config.paths).items()}
    return server | paths


def record_running(file_config: Config, state_dir: Path) -> None:
    """What `check-config --reload` compares a changed file with: this process's start-up values."""
    data = {"pid": os.getpid(), "settings": restart_only(file_config)}
    atomic_write(StateLayout(state_dir).running_settings, json.dumps(data, indent=1).encode(), durable=False)


def changes_needing_restart(new_file: Config) -> tuple[int, list[str]] | None:
    """(PID, "server.listen: A -> B", ...) of the index running on this config's state, if any runs."""
    try:
        data = json.loads(StateLayout(new_file.paths.state).running_settings.read_text())
        pid, running = int(data["pid"]), dict(data["settings"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _alive(pid):
        return None
    new = restart_only(new_file)
    return pid, [f"{key}: {running.get(key)} -> {value}" for key, value in new.items()
                 if running.get(key) != value]


def forget_running(state_dir: Path) -> None:
    """At a clean stop; after a crash the PID check in `changes_needing_restart` tells."""
    StateLayout(state_dir).running_settings.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    """kill(pid, 0), not /proc: the unit's ExecReload runs in a user namespace of its own, where
    ProtectProc=invisible hides the main process's /proc entry, but the kernel still answers."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def public(url: str | None) -> str:
    """A URL fit for a log line: credentials removed."""
    return display_url(url) if url else "none"
