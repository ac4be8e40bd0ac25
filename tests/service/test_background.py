"""`server` and `watcher` for a per-user install, as background processes (service/background.py).

The machine running the tests has no systemd user manager (and the tests make sure of it with an
XDG_RUNTIME_DIR of their own), so `start` takes the PID-file path: real processes, a real
index on a loopback port, a real git repository whose new tag must arrive by itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pypi_insiders import config
from pypi_insiders.service import background
from pypi_insiders.state_layout import StateLayout
from tests.conftest import ConfigMaker
from tests.support import git_fixtures as g
from tests.support.server_fixtures import request, service_env, wait_for


def _env(tmp_path: Path) -> dict[str, str]:
    runtime = tmp_path / "runtime"  # no systemd/private inside: no user manager, as on this machine
    runtime.mkdir(exist_ok=True)
    return {**g.cli_env(), **service_env({"XDG_RUNTIME_DIR": str(runtime)}),
            "PYTHONPATH": g.cli_env()["PYTHONPATH"]}


def _cli(tmp_path: Path, config_file: Path, *argv: str,
         timeout: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pypi_insiders", *argv, "-c", str(config_file)],
                          capture_output=True, text=True, timeout=timeout, env=_env(tmp_path), check=False)


def _files(loaded: config.Config, role: str) -> background.Files:
    return background.Files.of(StateLayout(loaded.paths.state).background, role)


@contextlib.contextmanager
def _killed_at_the_end(loaded: config.Config) -> Iterator[None]:
    """Whatever a failing test left running is stopped by its PID (and its session)."""
    try:
        yield
    finally:
        for role in ("server", "watcher"):
            running, _stale = background.read_pid(_files(loaded, role))
            if running is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(running.pid, signal.SIGKILL)


def _listed(base: str, project: str, filename: str) -> bool:
    try:
        return filename in request(base, f"/simple/{project}/").body.decode()
    except OSError:
        return False


@pytest.mark.slow
def test_background_server_and_watcher_publish_a_new_tag_without_update(
        make_config: ConfigMaker, tmp_path: Path, free_port: int) -> None:
    upstream = g.init_repo(tmp_path / "demo-pkg", g.intree_files("demo-pkg"))
    g.tag(upstream, "v1.0")
    config_file = make_config(server={"listen": f"127.0.0.1:{free_port}"}, fetch={"interval": "1 second"})
    loaded = config.load(str(config_file))
    base = f"http://127.0.0.1:{free_port}"
    assert _cli(tmp_path, config_file, "repos", "add", str(upstream), "demo-pkg").returncode == 0
    with _killed_at_the_end(loaded):
        started = _cli(tmp_path, config_file, "server", "start")
        assert started.returncode == 0, started.stderr
        assert started.stdout.startswith("server started (PID ")
        assert f"serving {base}/" in started.stdout
        assert request(base, "/simple/").status == 200  # ready means answering
        started = _cli(tmp_path, config_file, "watcher", "start")
        assert started.returncode == 0, started.stderr
        assert wait_for(lambda: _listed(base, "demo-pkg", "demo_pkg-1.0-py3-none-any.whl"), 120)

        g.commit_files(upstream, {"CHANGES": "1.1\n"})
        g.tag(upstream, "v1.1")
        assert wait_for(lambda: _listed(base, "demo-pkg", "demo_pkg-1.1-py3-none-any.whl"), 120)

        for role in ("server", "watcher"):
            status = _cli(tmp_path, config_file, role, "status")
            assert status.returncode == 0, status.stdout
            assert status.stdout.startswith(f"{role}: running (PID ")
        logs = _cli(tmp_path, config_file, "watcher", "logs", "-n", "200")
        assert "fetch run (interval)" in logs.stdout
        pids = [background.read_pid(_files(loaded, role))[0] for role in ("server", "watcher")]
        for role in ("server", "watcher"):
            stopped = _cli(tmp_path, config_file, role, "stop")
            assert stopped.returncode == 0
            assert stopped.stdout.startswith(f"{role} stopped (PID ")
        for running in pids:
            assert running is not None
            assert not Path(f"/proc/{running.pid}").exists() or background._start_ticks(running.pid) is None
        with pytest.raises(ConnectionRefusedError):
            request(base, "/simple/", timeout=2)
        assert _cli(tmp_path, config_file, "server", "status").returncode == 3


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait(timeout=30)
    return child.pid


def test_background_start_replaces_a_stale_pid_file(make_config: ConfigMaker, tmp_path: Path) -> None:
    config_file = make_config(fetch={"interval": "1 hour"})
    loaded = config.load(str(config_file))
    files = _files(loaded, "watcher")
    files.pid.parent.mkdir(parents=True)
    stale = _dead_pid()
    files.pid.write_text(f"{stale} 12345\n")
    status = _cli(tmp_path, config_file, "watcher", "status")
    assert status.returncode == 3
    assert f"not running (stale PID file {files.pid}: PID {stale} is gone" in status.stdout
    with _killed_at_the_end(loaded):
        started = _cli(tmp_path, config_file, "watcher", "start")
        assert started.returncode == 0, started.stderr
        assert f"(replaced a stale PID file of PID {stale})" in started.stdout
        again = _cli(tmp_path, config_file, "watcher", "start")
        assert again.returncode == 0
        assert again.stdout.startswith("watcher is already running (PID ")
        assert _cli(tmp_path, config_file, "watcher", "stop").returncode == 0
    assert not files.pid.exists()


def test_background_a_reused_pid_is_never_signalled(make_config: ConfigMaker, tmp_path: Path) -> None:
    """A PID file naming a live process that started at another time (the PID was reused)."""
    loaded = config.load(str(make_config()))
    files = _files(loaded, "server")
    files.pid.parent.mkdir(parents=True)
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        files.pid.write_text(f"{bystander.pid} 1\n")
        assert background.read_pid(files) == (None, bystander.pid)
        stopped = _cli(tmp_path, loaded.path or Path(), "server", "stop")
        assert stopped.returncode == 0
        assert stopped.stdout.strip() == (
            f"server is not running (removed a stale PID file of PID {bystander.pid})")
        assert bystander.poll() is None
        assert not files.pid.exists()
    finally:
        bystander.kill()
        bystander.wait(timeout=30)


def test_background_a_start_that_fails_shows_the_log(make_config: ConfigMaker, tmp_path: Path,
                                                     free_port: int) -> None:
    config_file = make_config(server={"listen": f"127.0.0.1:{free_port}"})
    loaded = config.load(str(config_file))
    with socket.socket() as taken, _killed_at_the_end(loaded):
        taken.bind(("127.0.0.1", free_port))
        taken.listen()
        started = _cli(tmp_path, config_file, "server", "start")
    assert started.returncode == 1
    lines = started.stderr.splitlines()
    assert lines[0].startswith("pypi-insiders: server exited with status ")
    assert f"before it was ready; the end of its log ({_files(loaded, 'server').log}):" in lines[0]
    assert any("127.0.0.1" in line and str(free_port) in line for line in lines[1:])
    assert not _files(loaded, "server").pid.exists()


def test_background_logs_and_status_without_a_start(make_config: ConfigMaker, tmp_path: Path) -> None:
    config_file = make_config()
    status = _cli(tmp_path, config_file, "server", "status")
    assert (status.returncode, status.stdout.splitlines()[0]) == (3, "server: not running")
    logs = _cli(tmp_path, config_file, "watcher", "logs")
    assert (logs.returncode, logs.stdout, logs.stderr) == (0, "", "")
    bad = _cli(tmp_path, config_file, "server", "logs", "--lines", "-3")
    assert (bad.returncode, bad.stderr) == (2, "pypi-insiders: --lines must be 0 or more, not -3\n")
