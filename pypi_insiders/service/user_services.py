"""`server|watcher ACTION` for a per-user install: systemd user units, else background processes.

The Debian package's system units are driven by `units.py`. A user who installed with pip has
neither those units nor root, so here `server` runs `pypi-insiders serve` and `watcher` runs
`pypi-insiders watch` (a fetch every `[fetch] interval`) with what the login offers:
- a systemd user manager (`systemctl --user` answers): transient units made with
  `systemd-run --user`, so the journal, restarts and `systemctl --user` all work, and nothing is
  left in ~/.config to go stale when the package moves; they last until the user manager stops;
- else background processes with a PID file and a log file (`background.py`), in
  `<data directory>/background/`.
Both run the same config file as the command that started them (`-c` with its absolute path).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from pypi_insiders.config import Config
from pypi_insiders.errors import UsageError
from pypi_insiders.service import background
from pypi_insiders.state_layout import StateLayout

ROLES = {"server": "serve", "watcher": "watch"}
USER_UNITS = {"server": "pypi-insiders-index.service", "watcher": "pypi-insiders-watcher.service"}
DESCRIPTIONS = {"server": "pypi-insiders index (per-user)", "watcher": "pypi-insiders watcher (per-user)"}
# Handed to a user unit from the caller's environment, by name only (systemd-run copies the
# value): the user manager's own environment is the login's, not this shell's.
PASSED_ENV = ("PIP_INDEX_URL", "PIP_CONFIG_FILE", "PIP_NO_INDEX", "PIP_FIND_LINKS", "SSH_AUTH_SOCK",
              "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "HTTPS_PROXY", "https_proxy",
              "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")
QUERY_TIMEOUT = 30.0


def child_argv(role: str, config: Config, *, verbose: int = 0, quiet: bool = False) -> list[str]:
    """The command the background role runs: this interpreter, this package, this config file."""
    if role not in ROLES:
        msg = f"unknown command {role!r}: expected server or watcher"
        raise UsageError(msg)
    argv = [sys.executable, "-m", "pypi_insiders"]
    if config.path is not None:
        argv += ["-c", str(config.path.absolute())]
    argv += ["-v"] * verbose + (["-q"] if quiet else [])
    return [*argv, ROLES[role]]


def user_manager_running(env: Mapping[str, str] = os.environ) -> bool:
    """sd_booted's test for a user manager: its private socket in $XDG_RUNTIME_DIR."""
    runtime = env.get("XDG_RUNTIME_DIR", "")
    return (bool(runtime) and Path(runtime, "systemd", "private").exists()
            and shutil.which("systemd-run") is not None)


def unit_command_lines(role: str, action: str, argv: list[str], *, follow: bool = False,
                       lines: int = 50, env: Mapping[str, str] = os.environ) -> list[list[str]]:
    """The argv lists an action runs against the user manager; no side effects."""
    unit = USER_UNITS[role]
    if action == "start":
        passed = [f"--setenv={name}" for name in PASSED_ENV if name in env]
        return [["systemctl", "--user", "reset-failed", unit],
                ["systemd-run", "--user", "--quiet", f"--unit={unit}",
                 f"--description={DESCRIPTIONS[role]}", "--property=Type=notify",
                 "--property=Restart=on-failure", "--property=RestartSec=10",
                 # the first generation of a large store takes minutes (the index answers meanwhile)
                 f"--property=TimeoutStartSec={'infinity' if role == 'server' else '90'}",
                 *passed, "--", *argv]]
    if action == "stop":
        return [["systemctl", "--user", "stop", unit]]
    if action == "status":
        return [["systemctl", "--user", "status", "--no-pager", unit]]
    base = ["journalctl", "--user", "--unit", unit, "--lines", str(lines)]
    return [[*base, "--follow"] if follow else [*base, "--no-pager"]]


def cli(config: Config, role: str, action: str, *, follow: bool = False, lines: int = 50,
        verbose: int = 0, quiet: bool = False) -> int:
    if lines < 0:
        msg = f"--lines must be 0 or more, not {lines}"
        raise UsageError(msg)
    argv = child_argv(role, config, verbose=verbose, quiet=quiet)
    if user_manager_running():
        return _with_user_manager(role, action, argv, follow=follow, lines=lines)
    return _in_background(config, role, action, argv, follow=follow, lines=lines)


def _with_user_manager(role: str, action: str, argv: list[str], *, follow: bool, lines: int) -> int:
    if action == "restart":
        status = _with_user_manager(role, "stop", argv, follow=follow, lines=lines)
        return status or _with_user_manager(role, "start", argv, follow=follow, lines=lines)
    unit = USER_UNITS[role]
    if action == "start" and subprocess.run(
            ["systemctl", "--user", "is-active", "--quiet", unit], timeout=QUERY_TIMEOUT,
            check=False).returncode == 0:
        print(f"{role} is already running ({unit} of your user manager)")
        return 0
    commands = unit_command_lines(role, action, argv, follow=follow, lines=lines)
    if action == "start":  # a failed transient unit stays loaded and blocks its name
        subprocess.run(commands.pop(0), capture_output=True, timeout=QUERY_TIMEOUT, check=False)
    for command in commands:
        returncode = subprocess.run(command, check=False).returncode  # the terminal's, on purpose
        if returncode != 0:
            return returncode
    if action == "start":
        print(f"{role} started as {unit} of your user manager (`pypi-insiders {role} logs`)")
    return 0


def _in_background(config: Config, role: str, action: str, argv: list[str], *, follow: bool,
                   lines: int) -> int:
    files = background.Files.of(StateLayout(config.paths.state).background, role)
    if action in ("stop", "restart"):
        print(background.stop(role, files))
    if action in ("start", "restart"):
        print(background.start(role, argv, files))
        if role == "server":
            print(f"serving http://{_url_host(config.server.host)}:{config.server.port}/")
        return 0
    if action == "status":
        status, report = background.status(role, files)
        print("\n".join(report))
        return status
    if action == "logs":
        if follow:
            background.follow(files.log, lines)
        for line in background.tail(files.log, lines):
            print(line)
    return 0


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
