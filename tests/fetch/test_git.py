"""Integration tier: real repositories fetched into mirrors over file:// and over HTTP with auth."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from urllib3.connection import HTTPConnection
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProxyError

from pypi_insiders import config, state_layout
from pypi_insiders.errors import CredentialError, FetchError
from pypi_insiders.fetch import credentials, git, repo_state
from pypi_insiders.http_client import display_url
from tests.conftest import ConfigMaker
from tests.support import git_fixtures as g

TOKEN = "s3cret-token-value"
FAKE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n"


@pytest.fixture
def upstream(tmp_path: Path) -> Path:
    repo = g.init_repo(tmp_path / "upstream", g.intree_files("demo"))
    g.tag(repo, "v1.0")
    g.tag(repo, "lightweight-1.1", annotated=False)
    return repo


def _load(make_config: ConfigMaker, **repo: Any) -> config.Config:
    return config.load(str(make_config(repos={"demo": repo})))


def _write_credential(directory: Path, name: str, content: str, mode: int = 0o600) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(content)
    path.chmod(mode)
    return path


def test_update_mirrors_tags_peeled_to_commits(make_config: ConfigMaker, upstream: Path) -> None:
    loaded = _load(make_config, url=f"file://{upstream}")
    outcome = git.update(loaded, loaded.repos[0])
    head = (upstream / ".git" / "refs" / "heads" / "master").read_text().strip()
    assert outcome.fetched
    assert outcome.tags == {"v1.0": head, "lightweight-1.1": head}
    assert git.mirror_path(loaded, "demo").name == f"{state_layout.slug('demo')}.git"


def test_update_counts_the_new_tags_not_the_objects(make_config: ConfigMaker, upstream: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    g.tag(upstream, "lightweight-1.2", annotated=False)  # the same commit as lightweight-1.1
    loaded = _load(make_config, url=f"file://{upstream}")
    git.update(loaded, loaded.repos[0])
    assert "demo: fetching 3 new tags" in caplog.messages
    g.commit_files(upstream, {"CHANGES": "2.0\n"})
    g.tag(upstream, "v2.0")
    git.update(loaded, loaded.repos[0])
    assert "demo: fetching 1 new tag" in caplog.messages


def test_update_transfers_nothing_when_no_tag_is_new(make_config: ConfigMaker, upstream: Path) -> None:
    loaded = _load(make_config, url=str(upstream))
    git.update(loaded, loaded.repos[0])
    mirror = git.mirror_path(loaded, "demo")
    before = g.object_count(mirror)
    g.commit_files(upstream, {"CHANGELOG": "untagged work\n"})  # a new commit, but no new tag
    outcome = git.update(loaded, loaded.repos[0])
    assert not outcome.fetched
    assert outcome.changed == 0
    assert g.object_count(mirror) == before


def test_update_follows_new_moved_and_deleted_tags(make_config: ConfigMaker, upstream: Path) -> None:
    loaded = _load(make_config, url=f"file://{upstream}")
    git.update(loaded, loaded.repos[0])
    new_head = g.commit_files(upstream, {"CHANGELOG": "1.2\n"})
    g.tag(upstream, "v1.2")
    (upstream / ".git" / "refs" / "tags" / "lightweight-1.1").unlink()
    outcome = git.update(loaded, loaded.repos[0])
    assert outcome.fetched
    assert outcome.tags["v1.2"] == new_head
    assert "lightweight-1.1" not in outcome.tags
    assert outcome.changed == 2


def test_update_names_the_repository_when_the_remote_is_missing(make_config: ConfigMaker,
                                                                 tmp_path: Path) -> None:
    loaded = _load(make_config, url=str(tmp_path / "nothing-here"))
    with pytest.raises(FetchError, match=r"repository demo .*nothing-here"):
        git.update(loaded, loaded.repos[0])


def test_update_reports_an_unreachable_http_server(make_config: ConfigMaker, free_port: int) -> None:
    loaded = _load(make_config, url=f"http://127.0.0.1:{free_port}/demo")
    with pytest.raises(FetchError, match=r"repository demo .*cannot fetch"):
        git.update(loaded, loaded.repos[0])


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_update_fails_fast_and_plainly_when_the_host_name_does_not_resolve(
        make_config: ConfigMaker, monkeypatch: pytest.MonkeyPatch, scheme: str) -> None:
    """One resolution, not four (urllib3 retried the connection 3 times: 53 s with a slow
    resolver), and the resolver's own words without urllib3's object repr."""
    asked: list[str] = []
    real = socket.getaddrinfo

    def resolver(host: str, *args: Any, **kwargs: Any) -> Any:
        if host.endswith(".invalid"):
            asked.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)  # the Debian build points them at a dead port
    loaded = _load(make_config, url=f"{scheme}://no-such-host.invalid/team/demo.git")
    with pytest.raises(FetchError) as caught:
        git.update(loaded, loaded.repos[0])
    assert asked == ["no-such-host.invalid"]
    assert str(caught.value) == (
        f"repository demo ({scheme}://no-such-host.invalid/team/demo.git): cannot fetch: "
        "Failed to establish a new connection: [Errno -2] Name or service not known")


def test_urllib3_reason_finds_the_cause_inside_every_wrapper() -> None:
    connection = HTTPConnection("no-such-host.invalid")
    refused = NewConnectionError(connection, "Failed to establish a new connection: [Errno -2] Name or "
                                             "service not known")
    wrapped = MaxRetryError(None, "/x.git", ProxyError("Cannot connect to proxy.", refused))  # type: ignore[arg-type]
    for error in (refused, wrapped):
        assert git._urllib3_reason(error) == (
            "Failed to establish a new connection: [Errno -2] Name or service not known")


@pytest.fixture
def served(upstream: Path) -> Iterator[g.GitServer]:
    with g.git_http_server({"demo": upstream}, "x-access-token", TOKEN) as server:
        yield server


def test_update_over_http_with_the_right_token(make_config: ConfigMaker, tmp_path: Path,
                                               served: g.GitServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _write_credential(tmp_path / "credentials", "demo-token", TOKEN + "\n")
    loaded = _load(make_config, url=f"{served.url}/demo", credential="demo-token")
    first = git.update(loaded, loaded.repos[0])
    assert first.fetched
    assert set(first.tags) == {"v1.0", "lightweight-1.1"}
    assert served.upload_pack_posts() == 1
    second = git.update(loaded, loaded.repos[0])
    assert not second.fetched
    assert served.upload_pack_posts() == 1  # refs asked for, no pack requested
    mirror = git.mirror_path(loaded, "demo")
    assert not any(TOKEN in p.read_text(errors="replace") for p in mirror.rglob("*") if p.is_file()
                   and p.suffix not in (".pack", ".idx"))
    assert TOKEN not in caplog.text


def test_update_over_http_with_user_and_password_in_the_file(make_config: ConfigMaker, tmp_path: Path,
                                                             served: g.GitServer) -> None:
    _write_credential(tmp_path / "credentials", "pair", f"x-access-token:{TOKEN}\n")
    loaded = _load(make_config, url=f"{served.url}/demo", credential="pair")
    assert git.update(loaded, loaded.repos[0]).fetched


def test_update_over_http_with_a_wrong_token_is_refused(make_config: ConfigMaker, tmp_path: Path,
                                                        served: g.GitServer) -> None:
    _write_credential(tmp_path / "credentials", "demo-token", "wrong-token")
    loaded = _load(make_config, url=f"{served.url}/demo", credential="demo-token")
    with pytest.raises(CredentialError, match=r"repository demo .*refused the credentials") as caught:
        git.update(loaded, loaded.repos[0])
    assert "wrong-token" not in str(caught.value)
    assert served.requests[-1][2] == 401


def test_update_over_http_without_a_credential_says_one_is_needed(make_config: ConfigMaker,
                                                                  served: g.GitServer) -> None:
    loaded = _load(make_config, url=f"{served.url}/demo")
    with pytest.raises(CredentialError, match="needs credentials"):
        git.update(loaded, loaded.repos[0])


def test_credentials_refuse_a_file_readable_by_others(make_config: ConfigMaker, tmp_path: Path) -> None:
    path = _write_credential(tmp_path / "credentials", "open", TOKEN, mode=0o644)
    loaded = _load(make_config, url="https://git.example.invalid/demo.git", credential="open")
    with pytest.raises(CredentialError, match=f"repository demo: {path} is readable by every user"):
        credentials.for_repo(loaded, loaded.repos[0])


def test_credentials_name_the_repository_when_missing(make_config: ConfigMaker) -> None:
    loaded = _load(make_config, url="https://git.example.invalid/demo.git", credential="absent")
    with pytest.raises(CredentialError, match="repository demo: credential 'absent' not found"):
        credentials.for_repo(loaded, loaded.repos[0])


def test_credentials_prefer_the_systemd_directory(make_config: ConfigMaker, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _write_credential(tmp_path / "credentials", "tok", "from-etc")
    _write_credential(tmp_path / "systemd", "tok", "from-systemd")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "systemd"))
    loaded = _load(make_config, url="https://git.example.invalid/demo.git", credential="tok",
                   username="robot")
    assert credentials.for_repo(loaded, loaded.repos[0]) == credentials.HttpAuth("robot", "from-systemd")


def test_credentials_refuse_a_key_for_an_https_url(make_config: ConfigMaker, tmp_path: Path) -> None:
    _write_credential(tmp_path / "credentials", "key", "-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n"
                      "-----END OPENSSH PRIVATE KEY-----\n")
    loaded = _load(make_config, url="https://git.example.invalid/demo.git", credential="key")
    with pytest.raises(CredentialError, match="repository demo: credential 'key' is an SSH key"):
        git.update(loaded, loaded.repos[0])


def test_credentials_give_ssh_a_private_key_copy_and_strict_options(make_config: ConfigMaker,
                                                                    tmp_path: Path) -> None:
    key = FAKE_KEY
    _write_credential(tmp_path / "credentials", "deploy-key", key, mode=0o640)
    loaded = _load(make_config, url="git@git.example.invalid:team/demo.git", credential="deploy-key")
    with credentials.transport_kwargs(loaded, loaded.repos[0], "ssh") as kwargs:
        copy = Path(kwargs["key_filename"])
        assert copy.read_text() == key
        assert copy.stat().st_mode & 0o777 == 0o600
        assert "IdentitiesOnly=yes" in kwargs["ssh_command"]
        assert "StrictHostKeyChecking=accept-new" in kwargs["ssh_command"]
        assert str(loaded.paths.state / "known_hosts") in kwargs["ssh_command"]
        assert "not-a-real-key" not in kwargs["ssh_command"]
    assert not copy.exists()


def test_update_over_ssh_reports_an_unreachable_host(make_config: ConfigMaker, tmp_path: Path,
                                                     free_port: int) -> None:
    _write_credential(tmp_path / "credentials", "deploy-key", FAKE_KEY)
    loaded = _load(make_config, url=f"ssh://git@127.0.0.1:{free_port}/team/demo.git", credential="deploy-key")
    with pytest.raises(FetchError, match=r"repository demo .*cannot fetch") as caught:
        git.update(loaded, loaded.repos[0])
    assert "not-a-real-key" not in str(caught.value)


@pytest.mark.parametrize(("url", "scheme"), [
    ("https://h/a.git", "https"), ("http://h/a", "http"), ("ssh://git@h/a", "ssh"),
    ("git@h:team/a.git", "ssh"), ("file:///srv/a", "file"), ("/srv/a", "file"), ("./a", "file"),
])
def test_scheme_of_recognises_every_source_form(url: str, scheme: str) -> None:
    assert git.scheme_of(url) == scheme


def test_display_url_hides_passwords() -> None:
    assert display_url("https://me:secret@h:8443/a.git") == "https://h:8443/a.git"
    assert display_url("https://TOKEN@h/a.git") == "https://h/a.git"
    assert display_url("git@h:a.git") == "git@h:a.git"


def test_state_backoff_doubles_up_to_the_cap() -> None:
    record = repo_state.RepoState("demo")
    delays = []
    for _ in range(5):
        record.record_failure("boom", backoff_max=1000.0, now=0.0)
        delays.append(record.next_attempt)
    assert delays == [300.0, 600.0, 1000.0, 1000.0, 1000.0]
    record.record_success("unchanged")
    assert (record.failures, record.next_attempt, record.last_error) == (0, None, None)


def test_state_survives_a_round_trip_and_a_corrupt_file(loaded_config: config.Config) -> None:
    record = repo_state.RepoState("a/b", distribution="demo", built={"1.0": "v1.0"})
    record.last_build = repo_state.BuildRecord(tag="v1.0", version="1.0", result="ok", time=1.0,
                                                files=["demo-1.0.tar.gz"])
    repo_state.save(loaded_config, record)
    assert repo_state.load(loaded_config, "a/b") == record
    record.failed_builds["1.1"] = repo_state.FailedBuild(tag="v1.1", commit="c" * 40, failures=2,
                                                           next_attempt=3.0)
    repo_state.save(loaded_config, record)
    assert repo_state.load(loaded_config, "a/b") == record
    edited = json.loads(repo_state.path_of(loaded_config, "a/b").read_text())
    edited["built"]["not a version"] = "v?"
    edited["failed_builds"]["one.two"] = {"tag": "x", "commit": "c" * 40, "failures": 1, "next_attempt": 1.0}
    repo_state.path_of(loaded_config, "a/b").write_text(json.dumps(edited))
    assert repo_state.load(loaded_config, "a/b") == record  # a hand edit that is not a version is dropped
    repo_state.path_of(loaded_config, "a/b").write_text("{not json")
    assert repo_state.load(loaded_config, "a/b") == repo_state.RepoState("a/b")
    written = [p.name for p in (loaded_config.paths.state / "repos").iterdir()]
    assert written == [f"{state_layout.slug('a/b')}.json"]
