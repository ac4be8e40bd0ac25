"""Where each piece lives: the per-user file, one tree beside the config, instances that never share state."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from pypi_insiders import config
from pypi_insiders.cli import main
from pypi_insiders.config import locations
from tests.conftest import ConfigMaker
from tests.support.distfiles import make_wheel
from tests.support.server_fixtures import pypi_insiders, request, serve_process, service_env, stop_process


@pytest.fixture
def no_system_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """This machine's /etc/pypi-insiders (if the package is installed) must not decide the test."""
    monkeypatch.setattr(locations, "SYSTEM_CONFIG", tmp_path / "etc-none" / "config.toml")


def test_locations_per_user_file_is_read_and_its_tree_is_beside_it(no_system_file: None,
                                                                   tmp_path: Path) -> None:
    user_file = tmp_path / "xdg-config" / "pypi-insiders" / "config.toml"
    user_file.parent.mkdir(parents=True)
    user_file.write_text('[server]\nlisten = "127.0.0.1:31999"\n')
    loaded = config.load(None)
    assert loaded.path == user_file
    assert loaded.server.port == 31999
    assert loaded.fetch.repos_dir == user_file.parent / "repos.d"
    assert loaded.upload.users_file == user_file.parent / "users"
    assert loaded.fetch.credentials_dir == user_file.parent / "credentials"
    assert loaded.paths.state == tmp_path / "xdg-data" / "pypi-insiders"
    assert loaded.paths.cache == tmp_path / "xdg-cache" / "pypi-insiders"


def test_locations_embedded_default_never_uses_the_system_state(no_system_file: None, tmp_path: Path) -> None:
    """The quickstart as root: no system file, so the per-user tree (root's own), not /var/lib."""
    loaded = config.load(None)
    assert loaded.path is None
    assert loaded.paths.store == tmp_path / "xdg-data" / "pypi-insiders" / "store"
    assert loaded.paths.index == tmp_path / "xdg-data" / "pypi-insiders" / "index"
    assert loaded.fetch.repos_dir == tmp_path / "xdg-config" / "pypi-insiders" / "repos.d"
    assert "/var/" not in json.dumps({k: str(v) for k, v in vars(loaded.paths).items()})


def test_locations_system_file_gives_the_system_layout(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    system_file = tmp_path / "etc" / "config.toml"
    system_file.parent.mkdir()
    system_file.write_text("")
    monkeypatch.setattr(locations, "SYSTEM_CONFIG", system_file)
    loaded = config.load(str(system_file))
    assert loaded.paths.state == Path("/var/lib/pypi-insiders")
    assert loaded.paths.cache == Path("/var/cache/pypi-insiders")
    assert loaded.fetch.repos_dir == system_file.parent / "repos.d"


def test_locations_config_elsewhere_keeps_repos_beside_it_and_check_config_says_so(
        no_system_file: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    elsewhere = tmp_path / "elsewhere" / "config.toml"
    elsewhere.parent.mkdir()
    elsewhere.write_text("")
    monkeypatch.setenv("PYPI_INSIDERS_CONFIG", str(elsewhere))
    try:
        assert main(["repos", "add", "team/proj"]) == 0
        assert main(["check-config"]) == 0
        assert main(["repos", "list", "--json"]) == 0
    finally:
        monkeypatch.delenv("PYPI_INSIDERS_CONFIG")
    out = capsys.readouterr().out
    assert (elsewhere.parent / "repos.d" / "team-proj.toml").exists()
    assert f"config: {elsewhere} ($PYPI_INSIDERS_CONFIG)" in out
    assert f"repos.d: {elsewhere.parent / 'repos.d'}  [beside the config file, in {elsewhere.parent}]" in out
    assert f"store: {tmp_path / 'xdg-data' / 'pypi-insiders' / 'store'}  [default (per-user layout)]" in out
    assert '"team/proj"' in out


def test_locations_check_config_names_the_key_a_path_came_from(make_config: ConfigMaker, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = make_config()
    assert main(["--config", str(path), "check-config", "--json"]) == 0
    sources = json.loads(capsys.readouterr().out)["sources"]
    assert sources["data"] == "paths.data"
    assert sources["cache"] == "paths.cache"
    assert sources["store"] == "paths.data"
    assert sources["repos.d"] == "fetch.repos_dir"


def test_locations_store_on_command_line_gets_state_of_its_own(no_system_file: None, tmp_path: Path) -> None:
    base = config.load(None)
    one = config.with_overrides(base, store=str(tmp_path / "a"))
    two = config.with_overrides(base, store=str(tmp_path / "b"))
    assert one.paths.state != two.paths.state
    assert one.paths.index != two.paths.index
    assert one.paths.cache != two.paths.cache
    assert one.paths.state.parent == base.paths.state / "stores"
    assert one.paths.state.name.startswith("a-")
    assert config.with_overrides(base, store=str(base.paths.store)) == base


def _store(root: Path, name: str) -> Path:
    root.mkdir(parents=True)
    make_wheel(root, name, "1.0")
    return root


@pytest.mark.usefixtures("no_system_file")
def test_serve_two_stores_without_config_serve_their_own_pages(tmp_path: Path) -> None:
    a, b = _store(tmp_path / "a", "alpha"), _store(tmp_path / "b", "beta")
    flags = ("--listen", "127.0.0.1:0", "--fallback", "off")
    with serve_process(None, "--store", str(a), *flags, workdir=tmp_path) as first, \
            serve_process(None, "--store", str(b), *flags, workdir=tmp_path) as second:
        assert request(first.url, "/simple/alpha/").status == 200
        assert request(second.url, "/simple/beta/").status == 200
        assert request(first.url, "/simple/beta/").status == 404
        assert request(second.url, "/simple/alpha/").status == 404
    stores = tmp_path / "xdg-data" / "pypi-insiders" / "stores"
    assert len(list(stores.iterdir())) == 2


@pytest.mark.usefixtures("no_system_file")
def test_serve_second_instance_on_the_same_state_refuses_naming_lock_and_pid(tmp_path: Path) -> None:
    a = _store(tmp_path / "a", "alpha")
    with serve_process(None, "--store", str(a), "--listen", "127.0.0.1:0", workdir=tmp_path) as first:
        second = subprocess.Popen([*pypi_insiders(), "serve", "--store", str(a), "--listen", "127.0.0.1:0"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=service_env(), cwd=tmp_path)
        try:
            _out, err = second.communicate(timeout=60)
        finally:
            stop_process(second)
        assert request(first.url, "/simple/alpha/").status == 200
    assert second.returncode == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "serve.lock: held by another pypi-insiders serve" in lines[0]
    assert f"(PID {first.process.pid})" in lines[0]


def test_serve_lock_is_released_with_the_process(tmp_path: Path, make_config: ConfigMaker) -> None:
    path = make_config()
    with serve_process(path) as first:
        pid = first.process.pid
    with serve_process(path) as second:  # the first one's lock went with it
        assert second.process.pid != pid
        assert request(second.url, "/simple/").status == 200
    assert os.environ.get("PYPI_INSIDERS_CONFIG") is None
