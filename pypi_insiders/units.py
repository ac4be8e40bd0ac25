"""`pypi-insiders server|watcher ACTION`: the original's service commands, on top of systemd.

The Debian package runs the index and the fetcher as systemd units, so these commands are
thin: they build a systemctl or journalctl command line, check that systemd can answer it,
and hand the terminal over. Their exit status is systemctl's, so scripts can rely on it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from pypi_insiders.errors import SystemdError, UsageError

INDEX_SERVICE = "pypi-insiders-index.service"
FETCH_SERVICE = "pypi-insiders-fetch.service"
FETCH_TIMER = "pypi-insiders-fetch.timer"
FETCH_PATH = "pypi-insiders-fetch.path"  # starts the fetch service when a webhook queued a repository
# sd_booted(3): systemd creates this directory at boot; nothing else does.
SYSTEMD_RUNTIME = Path("/run/systemd/system")
# How long a query about a unit's existence may take before we call systemd unresponsive.
QUERY_TIMEOUT = 30.0


UNITS: dict[str, tuple[str, ...]] = {
    # start/stop/restart act on the first unit; status shows them all.
    "server": (INDEX_SERVICE,),
    "watcher": (FETCH_TIMER, FETCH_SERVICE),
}
ACTIONS = ("start", "stop", "restart", "status", "logs")


def units_of(command: str) -> tuple[str, ...]:
    try:
        return UNITS[command]
    except KeyError:
        msg = f"unknown command {command!r}: expected server or watcher"
        raise UsageError(msg) from None


def command_lines(command: str, action: str, *, follow: bool = False,
                  lines: int = 50) -> list[list[str]]:
    """The argv lists an action runs, in order; no side effects, so it is what tests check."""
    units = units_of(command)
    if action in ("start", "stop", "restart"):
        return [["systemctl", action, units[0]]]
    if action == "status":
        return [["systemctl", "status", "--no-pager", *units]]
    if action == "logs":
        if lines < 0:
            msg = f"--lines must be 0 or more, not {lines}"
            raise UsageError(msg)
        # The timer itself logs nothing useful; the runs are the fetch service's.
        journal_unit = FETCH_SERVICE if command == "watcher" else INDEX_SERVICE
        argv = ["journalctl", "--unit", journal_unit, "--lines", str(lines)]
        return [[*argv, "--follow"] if follow else [*argv, "--no-pager"]]
    msg = f"unknown action {action!r}: expected one of {', '.join(ACTIONS)}"
    raise UsageError(msg)


def check_systemd(runtime_dir: Path = SYSTEMD_RUNTIME) -> None:
    """Fail with one line when the machine was not booted with systemd (a container, WSL)."""
    if not runtime_dir.is_dir():
        msg = (
            f"systemd is not running on this machine ({runtime_dir} is missing); "
                           "run `pypi-insiders serve` or `pypi-insiders update` directly instead"
        )
        raise SystemdError(msg)
    for tool in ("systemctl", "journalctl"):
        if shutil.which(tool) is None:
            msg = f"{tool} is not on PATH; install systemd or run the commands directly"
            raise SystemdError(msg)


def check_installed(unit: str) -> None:
    """A missing unit gets our message instead of systemctl's, which does not say what to install."""
    try:
        result = subprocess.run(["systemctl", "show", "--property", "LoadState", "--value", unit],
                                capture_output=True, text=True, timeout=QUERY_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as error:
        msg = f"systemctl did not answer within {QUERY_TIMEOUT:.0f} s about {unit}"
        raise SystemdError(msg) from error
    state = result.stdout.strip()
    if result.returncode != 0:
        message = (result.stderr.strip().splitlines() or ["no output"])[-1]
        msg = f"systemctl cannot query {unit}: {message}"
        raise SystemdError(msg)
    if state == "not-found":
        msg = f"{unit} is not installed; install the pypi-insiders Debian package"
        raise SystemdError(msg)
    if state == "masked":
        msg = f"{unit} is masked; unmask it with `systemctl unmask {unit}`"
        raise SystemdError(msg)


def cli(command: str, action: str, *, follow: bool = False, lines: int = 50) -> int:
    """Run the action's commands in the foreground; the first failure's status is returned."""
    argvs = command_lines(command, action, follow=follow, lines=lines)
    check_systemd()
    for unit in units_of(command):
        check_installed(unit)
    for argv in argvs:
        # Interactive on purpose: no timeout (a start waits for READY=1, `logs -f` runs until ^C),
        # and output goes straight to the terminal.
        returncode = subprocess.run(argv, check=False).returncode
        if command == "watcher" and action == "status":
            return watcher_state()
        if returncode != 0:
            return returncode
    return 0


def watcher_state() -> int:
    """`watcher status`'s exit: 0 while the timer is active and the last run did not fail.

    systemctl status exits 3 for an inactive unit, and the fetch service is a oneshot that is
    inactive between runs: that is the watcher idling, not the watcher down.
    """
    def ask(*argv: str) -> int:
        try:
            return subprocess.run(["systemctl", *argv], capture_output=True, timeout=QUERY_TIMEOUT,
                                  check=False).returncode
        except subprocess.TimeoutExpired:
            return 4  # LSB: status unknown
    if ask("is-active", "--quiet", FETCH_TIMER) != 0:
        return 3
    return 3 if ask("is-failed", "--quiet", FETCH_SERVICE) == 0 else 0
