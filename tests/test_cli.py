"""The command line itself: global options anywhere, the help's defaults, check-config's lines."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pypi_insiders import cli
from tests.conftest import ConfigMaker
from tests.support.git_fixtures import cli_env
from tests.support.server_fixtures import serve_process


@pytest.mark.parametrize("argv", [
    ["-q", "-v", "-c", "FILE", "serve"], ["serve", "-q", "-v", "-c", "FILE"],
    ["-c", "FILE", "serve", "-q", "-v"],
    ["serve", "--config", "FILE", "--quiet", "--verbose"],
])
def test_cli_global_options_before_or_after_the_command(argv: list[str]) -> None:
    args = cli.build_parser().parse_args(argv)
    assert (args.command, args.config, args.quiet, args.verbose) == ("serve", "FILE", True, 1)


@pytest.mark.parametrize("argv", [
    ["users", "add", "alice", "-c", "FILE"], ["repos", "list", "-c", "FILE"],
    ["watcher", "logs", "-c", "FILE"],
    ["check-config", "-c", "FILE"], ["yank", "demo", "1.0", "-c", "FILE"],
])
def test_cli_global_options_after_every_command(argv: list[str]) -> None:
    assert cli.build_parser().parse_args(argv).config == "FILE"


def test_cli_global_options_default_when_absent() -> None:
    args = cli.build_parser().parse_args(["status"])
    assert (args.config, args.quiet, args.verbose) == (None, False, 0)


def test_cli_check_config_with_c_after_the_command(make_config: ConfigMaker) -> None:
    path = make_config()
    result = subprocess.run([sys.executable, "-m", "pypi_insiders", "check-config", "-c", str(path)],
                            capture_output=True, text=True, timeout=60, env=cli_env(), check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{path}: OK"
    config_lines = [line for line in lines if line.startswith("  config: ")]
    assert config_lines == [f"  config: {path} (--config)"]  # named once, not again as its own source
    assert path.name in config_lines[0]


@pytest.mark.parametrize(("euid", "default"), [
    (0, "default: $PYPI_INSIDERS_CONFIG, else /etc/pypi-insiders/config.toml if it exists, else "
        "~/.config/pypi-insiders/config.toml if it exists, else the embedded default"),
    (1000, "default: $PYPI_INSIDERS_CONFIG, else ~/.config/pypi-insiders/config.toml if it exists, "
           "else the embedded default"),
])
def test_cli_config_help_names_the_default_of_whoever_asks(euid: int, default: str) -> None:
    """A user other than root never reads the system file (config/locations.py), so its help says so."""
    assert cli.config_help(euid) == f"config file ({default})"


def test_cli_config_help_is_this_users() -> None:
    flat = " ".join(cli.build_parser().format_help().split())
    assert " ".join(cli.config_help(os.geteuid()).split()) in flat


def test_cli_check_config_reload_refuses_what_only_a_restart_applies(make_config: ConfigMaker,
                                                                     free_port: int) -> None:
    """What the unit's ExecReload runs: `systemctl reload` after a new `listen` must not exit 0."""
    path = make_config()
    reload = [sys.executable, "-m", "pypi_insiders", "check-config", "--reload", "-c", str(path)]

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(reload, capture_output=True, text=True, timeout=60, env=cli_env(), check=False)

    assert check().returncode == 0  # nothing running: nothing to compare with
    with serve_process(path) as served:
        assert check().returncode == 0
        make_config(upstream={"fallback": "redirect"})  # a reload applies this one
        assert check().returncode == 0
        make_config(server={"listen": f"127.0.0.1:{free_port}"})
        refused = check()
        assert refused.returncode == 2
        assert refused.stderr.splitlines() == [
            f"pypi-insiders: server.listen: 127.0.0.1:0 -> 127.0.0.1:{free_port} needs a restart of the "
            f"running index (PID {served.process.pid}), not a reload: nothing reloaded "
            "(systemctl restart pypi-insiders-index)"]
    assert check().returncode == 0  # stopped: the next start reads the file anyway
