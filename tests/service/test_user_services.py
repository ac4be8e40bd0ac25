"""`server|watcher` for a per-user install (service/user_services.py): which way, which commands.

The background path runs for real in test_background.py, the user units under a real systemd in
tests/e2e/in-container.sh (user_units); here, what any machine can check of the latter: its
detection and the command lines it runs.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from pypi_insiders import config
from pypi_insiders.service import user_services
from tests.conftest import ConfigMaker


def test_user_units_are_used_only_where_a_user_manager_runs(tmp_path: Path) -> None:
    assert not user_services.user_manager_running({"XDG_RUNTIME_DIR": str(tmp_path)})
    assert not user_services.user_manager_running({})
    (tmp_path / "systemd").mkdir()
    (tmp_path / "systemd" / "private").touch()
    expected = shutil.which("systemd-run") is not None
    assert user_services.user_manager_running({"XDG_RUNTIME_DIR": str(tmp_path)}) is expected


def test_user_units_command_lines(make_config: ConfigMaker) -> None:
    loaded = config.load(str(make_config()))
    argv = user_services.child_argv("watcher", loaded)
    assert argv == [sys.executable, "-m", "pypi_insiders", "-c", str(loaded.path), "watch"]
    unit = "pypi-insiders-watcher.service"
    start = user_services.unit_command_lines("watcher", "start", argv,
                                             env={"SSH_AUTH_SOCK": "/run/agent", "HOME": "/home/x"})
    assert start[0] == ["systemctl", "--user", "reset-failed", unit]
    assert start[1][:4] == ["systemd-run", "--user", "--quiet", f"--unit={unit}"]
    assert "--property=Type=notify" in start[1]
    assert "--setenv=SSH_AUTH_SOCK" in start[1]  # by name: the value never reaches an argv
    assert not any("/run/agent" in word or "HOME" in word for word in start[1])
    assert start[1][start[1].index("--") + 1:] == argv
    assert user_services.unit_command_lines("server", "logs", argv, follow=True, lines=5) == [
        ["journalctl", "--user", "--unit", "pypi-insiders-index.service", "--lines", "5", "--follow"]]
    assert user_services.unit_command_lines("server", "status", argv) == [
        ["systemctl", "--user", "status", "--no-pager", "pypi-insiders-index.service"]]
