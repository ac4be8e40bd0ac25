"""`status`: what the state files say, the upstream-newer warning against a loopback index, the page."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pypi_insiders import config
from pypi_insiders.fetch import repo_state, status
from pypi_insiders.http_client import Credentials, HttpClient
from tests.conftest import ConfigMaker
from tests.support.git_fixtures import cli_env, init_repo
from tests.support.server_fixtures import FakeUpstream, ThreadedServer, request, serve_process


@pytest.fixture
def upstream() -> Iterator[tuple[FakeUpstream, str]]:
    fake = FakeUpstream(projects={"demo": {"demo-9.5.18-py3-none-any.whl": b"w", "demo-9.5.17.tar.gz": b"s",
                                           "demo-9.6.0b1-py3-none-any.whl": b"pre"},
                                  "other": {"other-1.0.tar.gz": b"s"}})
    with ThreadedServer(fake.app) as server:
        yield fake, f"{server.url}simple/"


def _config(make_config: ConfigMaker, upstream_url: str) -> config.Config:
    return config.load(str(make_config(
        upstream={"url": upstream_url},
        repos={"demo": {"url": "https://me:hunter2@git.example.invalid/demo.git"},
               "other": {"url": "/srv/other", "distribution": "other"},
               "never": {"url": "/srv/never"}})))


def _record(loaded: config.Config, key: str, distribution: str, built: str, tag: str) -> None:
    record = repo_state.RepoState(key, distribution=distribution, refs={tag: "a" * 40, "docs": "b" * 40},
                             built={built: tag}, last_check=1_800_000_000.0, last_result="updated")
    files = [f"{distribution}-{built}.tar.gz"]
    record.last_build = repo_state.BuildRecord(tag=tag, version=built, result="ok", time=1_800_000_000.0,
                                               files=files)
    repo_state.save(loaded, record)


def test_status_warns_when_upstream_has_a_newer_public_release(
        make_config: ConfigMaker, upstream: tuple[FakeUpstream, str]) -> None:
    fake, url = upstream
    loaded = _config(make_config, url)
    _record(loaded, "demo", "demo", "9.5.17+insiders.4.53.6", "9.5.17-insiders-4.53.6")
    _record(loaded, "other", "other", "1.0.0.1.2.0", "1.0.0.1.2.0")
    rows = {row["key"]: row for row in status.collect(loaded)["repositories"]}
    assert rows["demo"]["warning"] == ("upstream has demo 9.5.18, newer than the newest Insiders build "
                                       "9.5.17+insiders.4.53.6")
    assert rows["demo"]["newest_tag"] == "9.5.17-insiders-4.53.6"
    assert rows["demo"]["last_check"] == "2027-01-15T08:00:00Z"
    assert "hunter2" not in rows["demo"]["url"]
    assert rows["other"]["warning"] is None  # 1.0 upstream is older than 1.0.0.1.2.0
    assert rows["never"]["last_result"] is None
    asked = len(fake.requests)
    assert asked == 2
    status.collect(loaded)
    assert len(fake.requests) == asked  # answered from the cache


def test_status_survives_an_unreachable_upstream(make_config: ConfigMaker, free_port: int) -> None:
    loaded = _config(make_config, f"http://127.0.0.1:{free_port}/simple/")
    _record(loaded, "demo", "demo", "1.0", "v1.0")
    rows = {row["key"]: row for row in status.collect(loaded)["repositories"]}
    assert rows["demo"]["upstream_version"] is None
    assert rows["demo"]["warning"] is None


def test_status_reaches_an_upstream_that_needs_basic_auth(
        make_config: ConfigMaker, upstream: tuple[FakeUpstream, str],
        caplog: pytest.LogCaptureFixture) -> None:
    """`user:password@` in upstream.url is sent as Basic auth; before, urllib could not even connect."""
    fake, url = upstream
    fake.authorization = Credentials("mirror", "pa55word").header()
    loaded = _config(make_config, url.replace("http://", "http://mirror:pa55word@"))
    _record(loaded, "demo", "demo", "9.5.17+insiders.4.53.6", "9.5.17-insiders-4.53.6")
    rows = {row["key"]: row for row in status.collect(loaded)["repositories"]}
    assert rows["demo"]["upstream_version"] == "9.5.18"
    assert rows["demo"]["warning"] is not None
    with HttpClient() as client:
        assert str(status.newest_public(loaded, "other", client)) == "1.0"
    assert "pa55word" not in caplog.text


def test_status_says_once_when_upstream_refuses_the_credentials(
        make_config: ConfigMaker, upstream: tuple[FakeUpstream, str],
        caplog: pytest.LogCaptureFixture) -> None:
    fake, url = upstream
    fake.authorization = Credentials("mirror", "right").header()
    loaded = _config(make_config, url.replace("http://", "http://mirror:wrong-pw@"))
    with HttpClient() as client:
        assert status.newest_public(loaded, "demo", client) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"newest public release of demo unknown: {url}demo/ answered 401"]
    assert "wrong-pw" not in caplog.text


def test_status_page_escapes_what_it_shows() -> None:
    page = status.render_html({"generated": "now", "next_run": None, "repositories": [{
        "key": "<b>x</b>", "distribution": None, "last_check": None, "newest_tag": None, "last_build": None,
        "last_result": "failed", "next_attempt": None, "last_error": "<script>alert(1)</script>",
        "warning": None}]})
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page


def test_status_page_shows_a_failed_builds_cause_after_newer_tags_built() -> None:
    page = status.render_html({"generated": "now", "next_run": None, "repositories": [{
        "key": "demo", "distribution": "demo", "last_check": None, "newest_tag": "v1.1",
        "last_build": {"version": "1.1", "result": "ok"}, "last_result": "updated", "next_attempt": None,
        "last_error": None, "warning": None, "failed_builds": [
            {"version": "1.0", "tag": "v1.0", "failures": 1, "next_attempt": None,
             "error": "repository demo tag v1.0: build failed (exit status 1): RuntimeError: no version"}]}]})
    assert "RuntimeError: no version" in page


def test_status_command_prints_json_and_text(make_config: ConfigMaker, tmp_path: Path) -> None:
    path = make_config(repos={"demo": {"url": "https://me:hunter2@git.example.invalid/demo.git"}})
    loaded = config.load(str(path))
    record = repo_state.RepoState("demo", last_check=1.0, last_result="failed", failures=2,
                             last_error="repository demo: cannot fetch: refused",
                             next_attempt=1_800_000_000.0)
    cause = "repository demo tag v1.0: build failed (exit status 1): RuntimeError: no version"
    record.failed_builds["1.0"] = repo_state.FailedBuild(tag="v1.0", commit="c" * 40, failures=3,
                                                       next_attempt=1_800_000_000.0, error=cause)
    repo_state.save(loaded, record)
    done = subprocess.run([sys.executable, "-m", "pypi_insiders", "-c", str(path), "status", "--json"],
                          capture_output=True, text=True, timeout=60, env=cli_env(), check=True)
    data = json.loads(done.stdout)
    assert data["repositories"][0]["failures"] == 2
    assert data["repositories"][0]["failed_builds"] == [
        {"version": "1.0", "tag": "v1.0", "failures": 3, "next_attempt": "2027-01-15T08:00:00Z",
         "error": cause}]
    assert "hunter2" not in done.stdout
    text = subprocess.run([sys.executable, "-m", "pypi_insiders", "-c", str(path), "status"],
                          capture_output=True, text=True, timeout=60, env=cli_env(), check=True).stdout
    assert "demo: checked 1970-01-01T00:00:01Z, failed; newest tag -; last build none" in text
    assert "  ! repository demo: cannot fetch: refused" in text
    assert "  next try 2027-01-15T08:00:00Z (after 2 failure(s))" in text
    assert f"  ! v1.0 failed to build 3 time(s); next try 2027-01-15T08:00:00Z: {cause}" in text


def _cli(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pypi_insiders", "-c", str(path), *args],
                          capture_output=True, text=True, timeout=120, env=cli_env(), check=False)


def test_status_page_follows_repos_add_remove_and_fetch_runs_without_reload(
        make_config: ConfigMaker, tmp_path: Path) -> None:
    path = make_config()
    init_repo(tmp_path / "proj", {"README": "a project without tags\n"})
    with serve_process(path) as served:
        assert json.loads(request(served.url, "/status.json").body)["repositories"] == []
        assert _cli(path, "repos", "add", str(tmp_path / "proj"), "proj").returncode == 0
        repos = json.loads(request(served.url, "/status.json").body)["repositories"]
        assert [(r["key"], r["last_check"]) for r in repos] == [("proj", None)]
        done = _cli(path, "update")
        assert done.returncode == 0, done.stderr
        repos = json.loads(request(served.url, "/status.json").body)["repositories"]
        assert repos[0]["last_check"] is not None
        assert repos[0]["last_result"] in ("updated", "unchanged")
        page = request(served.url, "/status")
        assert page.status == 200
        assert b'<a href="/">' in page.body
        assert b"<td>proj</td>" in page.body
        assert _cli(path, "repos", "remove", "proj").returncode == 0
        assert json.loads(request(served.url, "/status.json").body)["repositories"] == []


def test_status_shows_a_broken_dropin_and_the_repositories_known_at_start(
        make_config: ConfigMaker, tmp_path: Path) -> None:
    path = make_config(repos={"demo": {"url": "/srv/demo"}})
    loaded = config.load(str(path))
    (tmp_path / "repos.d").mkdir()
    (tmp_path / "repos.d" / "broken.toml").write_text("[repos.x\n")
    data = status.collect(loaded)
    assert [r["key"] for r in data["repositories"]] == ["demo"]
    assert "broken.toml: not valid TOML" in data["config_problem"]
    assert "configuration: " in status.render_html(data)
