"""`pypi-insiders server|watcher`: the command lines built, and the errors shown without systemd.

Driving real units needs a machine booted with systemd: tests/e2e/in-container.sh does that
inside a throwaway container. Here: what can be checked on any machine.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pypi_insiders import units
from pypi_insiders.errors import SystemdError, UsageError

INDEX = "pypi-insiders-index.service"
TIMER = "pypi-insiders-fetch.timer"
FETCH = "pypi-insiders-fetch.service"


@pytest.mark.parametrize(
    ("command", "action", "expected"),
    [
        ("server", "start", ["systemctl", "start", INDEX]),
        ("server", "stop", ["systemctl", "stop", INDEX]),
        ("server", "restart", ["systemctl", "restart", INDEX]),
        ("server", "status", ["systemctl", "status", "--no-pager", INDEX]),
        ("server", "logs", ["journalctl", "--unit", INDEX, "--lines", "50", "--no-pager"]),
        ("watcher", "start", ["systemctl", "start", TIMER]),
        ("watcher", "stop", ["systemctl", "stop", TIMER]),
        ("watcher", "restart", ["systemctl", "restart", TIMER]),
        ("watcher", "status", ["systemctl", "status", "--no-pager", TIMER, FETCH]),
        ("watcher", "logs", ["journalctl", "--unit", FETCH, "--lines", "50", "--no-pager"]),
    ],
)
def test_units_command_lines_drive_the_right_unit(command: str, action: str, expected: list[str]) -> None:
    assert units.command_lines(command, action) == [expected]


def test_units_command_lines_logs_follow_and_count() -> None:
    assert units.command_lines("watcher", "logs", follow=True, lines=5) == [
        ["journalctl", "--unit", FETCH, "--lines", "5", "--follow"]]


@pytest.mark.parametrize(
    ("command", "action", "lines", "message"),
    [
        ("client", "start", 50, "unknown command 'client'"),
        ("server", "reload", 50, "unknown action 'reload'"),
        ("server", "logs", -1, "--lines must be 0 or more"),
    ],
)
def test_units_command_lines_refuse_bad_input(command: str, action: str, lines: int, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        units.command_lines(command, action, lines=lines)


def test_units_check_systemd_names_the_missing_runtime_directory(tmp_path: Path) -> None:
    missing = tmp_path / "run-systemd-system"
    with pytest.raises(SystemdError) as raised:
        units.check_systemd(missing)
    assert str(raised.value).startswith(f"systemd is not running on this machine ({missing} is missing)")


def _fake_systemctl(bin_dir: Path, stdout: str, status: int = 0, stderr: str = "") -> None:
    """A stand-in for systemctl (not our code): answers `show` the way systemd 252 does."""
    script = bin_dir / "systemctl"
    script.write_text(f"#!/bin/sh\nprintf '%s' '{stdout}'\nprintf '%s' '{stderr}' >&2\nexit {status}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (("not-found\n", 0, ""), f"{INDEX} is not installed; install the pypi-insiders Debian package"),
        (("masked\n", 0, ""), f"{INDEX} is masked; unmask it with `systemctl unmask {INDEX}`"),
        (("", 1, "Failed to connect to bus: No such file or directory\n"),
         f"systemctl cannot query {INDEX}: Failed to connect to bus: No such file or directory"),
    ],
)
def test_units_check_installed_explains_what_systemctl_reports(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: tuple[str, int, str], message: str) -> None:
    _fake_systemctl(tmp_path, *answer)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(SystemdError) as raised:
        units.check_installed(INDEX)
    assert str(raised.value) == message


def test_units_check_installed_accepts_a_loaded_unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_systemctl(tmp_path, "loaded\n")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    units.check_installed(INDEX)


@pytest.mark.skipif(units.SYSTEMD_RUNTIME.is_dir(), reason="this machine runs systemd")
@pytest.mark.parametrize(("command", "action"),
                         [("server", "status"), ("watcher", "logs"), ("server", "start")])
def test_units_cli_without_systemd_says_so_in_one_line(command: str, action: str) -> None:
    """The system units' path (the system config); a per-user config goes to user_services."""
    with pytest.raises(SystemdError) as raised:
        units.cli(command, action)
    assert str(raised.value) == (
        f"systemd is not running on this machine ({units.SYSTEMD_RUNTIME} is missing); "
        "run `pypi-insiders serve` or `pypi-insiders update` directly instead")


def test_units_cli_bad_line_count_is_a_usage_error() -> None:
    result = subprocess.run([sys.executable, "-m", "pypi_insiders", "server", "logs", "--lines", "-3"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["pypi-insiders: --lines must be 0 or more, not -3"]


@pytest.mark.parametrize(("timer_active", "service_failed", "expected"), [
    (True, False, 0),  # the timer waits for its next run, the oneshot service is idle: all is well
    (True, True, 3),
    (False, False, 3),
])
def test_units_watcher_status_is_the_timer_and_the_last_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, timer_active: bool, service_failed: bool,
        expected: int) -> None:
    script = tmp_path / "systemctl"
    script.write_text("#!/bin/sh\n"  # a stand-in for systemctl: is-active/is-failed by exit status
                      f'[ "$1" = is-active ] && exit {0 if timer_active else 3}\n'
                      f'[ "$1" = is-failed ] && exit {0 if service_failed else 1}\n'
                      "exit 3\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert units.watcher_state() == expected


def test_units_help_says_what_status_does() -> None:
    result = subprocess.run([sys.executable, "-m", "pypi_insiders", "server", "--help"],
                            capture_output=True, text=True, timeout=60, check=True)
    assert "show the state of the index service" in result.stdout
    assert "status the index" not in result.stdout
