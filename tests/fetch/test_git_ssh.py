"""Fetching over SSH from a real sshd on loopback: the transport of the original pypi-insiders.

A deploy key from the credentials directory, the server's host key remembered at the first
fetch and held to afterwards, nothing transferred when no tag is new, and the refusals (a
wrong key, a changed host key) as one line naming the repository.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pypi_insiders import config, directories
from pypi_insiders.errors import CredentialError, FetchError
from pypi_insiders.fetch import credentials, git, runner
from pypi_insiders.store import Store
from tests.conftest import ConfigMaker
from tests.support import git_fixtures as g
from tests.support.server_fixtures import wait_for
from tests.support.ssh_fixtures import SshServer, keypair, missing_tools, ssh_server

pytestmark = pytest.mark.ssh


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    missing = missing_tools()
    if missing:  # a failure, not a skip: an SSH test that did not run has not passed
        pytest.fail(f"the SSH tests need {missing}; `bash .ci/deps` installs it", pytrace=False)


@pytest.fixture
def upstream(tmp_path: Path) -> Path:
    repo = g.init_repo(tmp_path / "upstream", g.intree_files("demo-pkg"))
    g.tag(repo, "v1.0")
    return repo


@pytest.fixture
def deploy_key(tmp_path: Path) -> tuple[Path, str]:
    return keypair(tmp_path / "keys", "deploy")


@pytest.fixture
def server(tmp_path: Path, deploy_key: tuple[Path, str]) -> Iterator[SshServer]:
    with ssh_server(tmp_path / "sshd", [deploy_key[1]]) as running:
        yield running


def _install_key(tmp_path: Path, name: str, key: Path) -> None:
    directory = tmp_path / "credentials"
    directory.mkdir(exist_ok=True)
    (directory / name).write_bytes(key.read_bytes())
    (directory / name).chmod(0o600)


def _load(make_config: ConfigMaker, url: str, credential: str) -> config.Config:
    loaded = config.load(str(make_config(repos={"demo": {"url": url, "credential": credential}})))
    directories.prepare(loaded, create=True)
    return loaded


def test_update_over_ssh_with_a_deploy_key(make_config: ConfigMaker, tmp_path: Path, upstream: Path, *,
                                           deploy_key: tuple[Path, str], server: SshServer,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _install_key(tmp_path, "deploy-key", deploy_key[0])
    loaded = _load(make_config, server.url(upstream), "deploy-key")
    first = git.update(loaded, loaded.repos[0])
    assert first.fetched
    assert list(first.tags) == ["v1.0"]
    assert server.host_key_line in credentials.known_hosts_path(loaded).read_text()

    mirror = git.mirror_path(loaded, "demo")
    before = g.object_count(mirror)
    g.commit_files(upstream, {"CHANGELOG": "untagged\n"})
    second = git.update(loaded, loaded.repos[0])
    assert not second.fetched
    assert g.object_count(mirror) == before

    secret = deploy_key[0].read_text().splitlines()[1]
    assert secret not in caplog.text
    assert not any(secret in p.read_text(errors="replace") for p in mirror.rglob("*")
                   if p.is_file() and p.suffix not in (".pack", ".idx"))


@pytest.mark.slow
def test_update_over_ssh_builds_and_publishes(make_config: ConfigMaker, tmp_path: Path, upstream: Path,
                                              deploy_key: tuple[Path, str], server: SshServer) -> None:
    _install_key(tmp_path, "deploy-key", deploy_key[0])
    loaded = _load(make_config, server.url(upstream), "deploy-key")
    assert runner.cli_update(loaded, []) == 0
    assert {entry.relpath for entry in Store(loaded.paths.store).walk()} == {
        "demo-pkg/demo_pkg-1.0-py3-none-any.whl", "demo-pkg/demo_pkg-1.0.tar.gz"}


@pytest.fixture
def agent(tmp_path: Path, deploy_key: tuple[Path, str]) -> Iterator[str]:
    """The user's own ssh-agent holding the key (stopped by its PID): a laptop's usual setup."""
    socket_path = tmp_path / "agent.sock"
    process = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket_path)], stdout=subprocess.DEVNULL)
    try:
        assert wait_for(socket_path.exists, 30)
        subprocess.run(["ssh-add", "-q", str(deploy_key[0])], check=True, timeout=30, capture_output=True,
                       env={**os.environ, "SSH_AUTH_SOCK": str(socket_path)})
        yield str(socket_path)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_update_over_ssh_without_a_credential_uses_the_users_agent(
        make_config: ConfigMaker, upstream: Path, server: SshServer, agent: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSH_AUTH_SOCK", agent)
    loaded = config.load(str(make_config(repos={"demo": {"url": server.url(upstream)}})))
    directories.prepare(loaded, create=True)
    assert list(git.update(loaded, loaded.repos[0]).tags) == ["v1.0"]


def test_update_over_ssh_with_a_wrong_key_is_refused(make_config: ConfigMaker, tmp_path: Path,
                                                     upstream: Path, server: SshServer) -> None:
    other, _public = keypair(tmp_path / "keys", "other")
    _install_key(tmp_path, "other-key", other)
    loaded = _load(make_config, server.url(upstream), "other-key")
    with pytest.raises(CredentialError) as caught:
        git.update(loaded, loaded.repos[0])
    assert str(caught.value) == (f"repository demo ({server.url(upstream)}): "
                                 "the server refused the SSH key 'other-key'")


def test_update_over_ssh_refuses_a_changed_host_key(make_config: ConfigMaker, tmp_path: Path,
                                                    upstream: Path, deploy_key: tuple[Path, str]) -> None:
    _install_key(tmp_path, "deploy-key", deploy_key[0])
    with ssh_server(tmp_path / "first", [deploy_key[1]]) as first:
        loaded = _load(make_config, first.url(upstream), "deploy-key")
        assert git.update(loaded, loaded.repos[0]).fetched
    g.commit_files(upstream, {"CHANGELOG": "1.1\n"})
    g.tag(upstream, "v1.1")
    with ssh_server(tmp_path / "impostor", [deploy_key[1]], port=first.port) as impostor:
        assert impostor.host_key_line != first.host_key_line
        with pytest.raises(FetchError, match="SSH host key is not the one recorded in") as caught:
            git.update(loaded, loaded.repos[0])
    assert str(credentials.known_hosts_path(loaded)) in str(caught.value)
    assert first.host_key_line in credentials.known_hosts_path(loaded).read_text()
