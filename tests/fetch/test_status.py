"""`status`: what the state files say, the upstream-newer warning against a loopback index, the page."""

from __future__ import annotations

import grp
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pypi_insiders
from pypi_insiders import config
from pypi_insiders.fetch import repo_state, status
from pypi_insiders.http_client import Credentials, HttpClient
from pypi_insiders.mirror.layout import MirrorLayout
from pypi_insiders.mirror.stats import MirrorStats
from pypi_insiders.status_report import Snapshot
from pypi_insiders.web import status_page
from pypi_insiders.web.app import make_app
from tests.conftest import ConfigMaker, to_toml
from tests.support.git_fixtures import cli_env, init_repo
from tests.support.server_fixtures import (
    FakeUpstream,
    ThreadedServer,
    request,
    serve_process,
    status_snapshot,
    wait_for,
)


@pytest.fixture
def upstream() -> Iterator[tuple[FakeUpstream, str]]:
    fake = FakeUpstream(projects={"demo": {"demo-9.5.18-py3-none-any.whl": b"w", "demo-9.5.17.tar.gz": b"s",
                                           "demo-9.6.0b1-py3-none-any.whl": b"pre"},
                                  "other": {"other-1.0.tar.gz": b"s"}})
    with ThreadedServer(fake.app) as server:
        yield fake, f"{server.url}simple/"


def _config(make_config: ConfigMaker, upstream_url: str) -> config.Config:
    return config.load(str(make_config(
        upstream={"url": upstream_url}, access={"public_projects": ["demo", "other"]},
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
    rows = {row.key: row for row in status.collect(loaded).repositories}
    assert rows["demo"].warning == ("upstream has demo 9.5.18, newer than the newest Insiders build "
                                    "9.5.17+insiders.4.53.6")
    assert rows["demo"].newest_tag == "9.5.17-insiders-4.53.6"
    assert rows["demo"].last_check == "2027-01-15T08:00:00Z"
    assert "hunter2" not in rows["demo"].url
    assert rows["other"].warning is None  # 1.0 upstream is older than 1.0.0.1.2.0
    assert rows["never"].last_result is None
    asked = len(fake.requests)
    assert asked == 2
    status.collect(loaded)
    assert len(fake.requests) == asked  # answered from the cache


def test_status_survives_an_unreachable_upstream(make_config: ConfigMaker, free_port: int) -> None:
    loaded = _config(make_config, f"http://127.0.0.1:{free_port}/simple/")
    _record(loaded, "demo", "demo", "1.0", "v1.0")
    rows = {row.key: row for row in status.collect(loaded).repositories}
    assert rows["demo"].upstream_version is None
    assert rows["demo"].warning is None


def test_status_reaches_an_upstream_that_needs_basic_auth(
        make_config: ConfigMaker, upstream: tuple[FakeUpstream, str],
        caplog: pytest.LogCaptureFixture) -> None:
    """`user:password@` in upstream.url is sent as Basic auth; before, urllib could not even connect."""
    fake, url = upstream
    fake.authorization = Credentials("mirror", "pa55word").header()
    loaded = _config(make_config, url.replace("http://", "http://mirror:pa55word@"))
    _record(loaded, "demo", "demo", "9.5.17+insiders.4.53.6", "9.5.17-insiders-4.53.6")
    rows = {row.key: row for row in status.collect(loaded).repositories}
    assert rows["demo"].upstream_version == "9.5.18"
    assert rows["demo"].warning is not None
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
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"
                and r.name.startswith("pypi_insiders")]
    assert warnings == [f"newest public release of demo unknown: {url}demo/ answered 401"]
    assert "wrong-pw" not in caplog.text


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
    assert "mirror" not in text  # fallback is not the mirror


def test_status_command_shows_the_mirror(make_config: ConfigMaker) -> None:
    path = make_config(upstream={"url": "http://up:s3cret@127.0.0.1:9/simple/", "fallback": "mirror",
                                 "max_size": "1 GiB", "min_free": "1 MiB"})
    loaded = config.load(str(path))
    layout = MirrorLayout.under(loaded.paths.cache)
    layout.ensure()
    kept = layout.file("ab" * 32, "a-1.0-py3-none-any.whl")
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"a" * 2048)
    stats = MirrorStats(layout.stats)
    stats.add(hits=5, misses=1, bytes_upstream=2048, stale_pages=1)
    stats.error("http://127.0.0.1:9/simple/a/ answered 500 (s3cret)")
    text = _cli(path, "status")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[-3].startswith("mirror: 2.0 KiB of 1.0 GiB in 1 file; free disk ")
    assert lines[-3].endswith(" (min_free 1.0 MiB)")
    assert lines[-2] == "  5 hits, 1 miss, 2.0 KiB from upstream, 1 stale page served"
    error = r"  ! last upstream error \([-0-9T:]+Z\): http://127.0.0.1:9/simple/a/ answered 500 \(\*\*\*\)"
    assert re.fullmatch(error, lines[-1])
    shown = json.loads(_cli(path, "status", "--json").stdout)["mirror"]
    assert (shown["bytes_used"], shown["files"], shown["hits"], shown["max_size"]) == (2048, 1, 5, 1024**3)


def _cli(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pypi_insiders", "-c", str(path), *args],
                          capture_output=True, text=True, timeout=120, env=cli_env(), check=False)


def _shown(url: str) -> list[dict[str, Any]] | None:
    """The repositories `/status.json` shows; None until the first snapshot is written."""
    reply = request(url, "/status.json")
    return json.loads(reply.body)["repositories"] if reply.status == 200 else None


def test_status_page_follows_repos_add_remove_and_fetch_runs_without_reload(
        make_config: ConfigMaker, tmp_path: Path) -> None:
    """The parent's refresher notices each change within a second or two (it polls the inputs)."""
    path = make_config()
    init_repo(tmp_path / "proj", {"README": "a project without tags\n"})
    with serve_process(path) as served:
        assert wait_for(lambda: _shown(served.url) is not None)
        assert _shown(served.url) == []
        assert _cli(path, "repos", "add", str(tmp_path / "proj"), "proj").returncode == 0
        assert wait_for(lambda: bool(_shown(served.url)))
        repos = _shown(served.url) or []
        assert [(r["key"], r["last_check"]) for r in repos] == [("proj", None)]
        done = _cli(path, "update")
        assert done.returncode == 0, done.stderr
        assert wait_for(lambda: (_shown(served.url) or [{}])[0].get("last_check") is not None)
        repos = _shown(served.url) or []
        assert repos[0]["last_check"] is not None
        assert repos[0]["last_result"] in ("updated", "unchanged")
        page = request(served.url, "/status")
        assert page.status == 200
        assert b'<a href="/">' in page.body
        assert b"<td>proj</td>" in page.body
        assert _cli(path, "repos", "remove", "proj").returncode == 0
        assert wait_for(lambda: _shown(served.url) == [])


def test_status_shows_a_broken_dropin_and_the_repositories_known_at_start(
        make_config: ConfigMaker, tmp_path: Path) -> None:
    path = make_config(repos={"demo": {"url": "/srv/demo"}})
    loaded = config.load(str(path))
    (tmp_path / "repos.d").mkdir()
    (tmp_path / "repos.d" / "broken.toml").write_text("[repos.x\n")
    data = status.collect(loaded)
    assert [r.key for r in data.repositories] == ["demo"]
    assert "broken.toml: not valid TOML" in (data.config_problem or "")
    assert "configuration: " in status_page.render_html(data)


# --------------------------------------------------------------------------- off the request path


_STARTS_A_PROGRAM = frozenset({"subprocess.Popen", "os.system", "os.posix_spawn", "os.exec", "os.fork"})


@pytest.fixture
def programs_started() -> Iterator[list[str]]:
    """Every program this process starts (audit events) while the test runs; an audit hook cannot
    be removed, so it records only while the list is handed out."""
    started: list[str] = []
    recording = [True]

    def hook(event: str, args: tuple[object, ...]) -> None:
        if recording[0] and event in _STARTS_A_PROGRAM:
            started.append(f"{event} {args[:2]!r}")

    sys.addaudithook(hook)
    yield started
    recording[0] = False


def test_status_request_asks_neither_upstream_nor_a_program(
        make_config: ConfigMaker, upstream: tuple[FakeUpstream, str], programs_started: list[str]) -> None:
    """Before, every request could ask upstream (its cache gone) and run systemctl in a waitress
    thread; now the request reads the snapshot the parent wrote."""
    fake, url = upstream
    loaded = _config(make_config, url)
    _record(loaded, "demo", "demo", "9.5.17+insiders.4.53.6", "9.5.17-insiders-4.53.6")
    snapshot = status_snapshot(loaded)
    asked = len(fake.requests)
    assert asked == 2  # the parent's refresh asked about demo and other
    (loaded.paths.cache / "upstream-releases.json").unlink()  # a request computing it would ask again
    programs_started.clear()
    with ThreadedServer(make_app(loaded, status=snapshot)) as server:
        for path in ("/status", "/status.json") * 10:
            assert request(server.url, path).status == 200
        rows = json.loads(request(server.url, "/status.json").body)["repositories"]
    assert {r["key"]: r["upstream_version"] for r in rows}["demo"] == "9.5.18"  # from the snapshot
    assert len(fake.requests) == asked
    assert programs_started == []


def test_status_without_a_snapshot_yet_says_so(make_config: ConfigMaker) -> None:
    loaded = config.load(str(make_config()))
    with ThreadedServer(make_app(loaded, status=Snapshot.in_cache(loaded.paths.cache))) as server:
        reply = request(server.url, "/status.json")
    assert (reply.status, reply.header("Retry-After")) == (503, "2")


def test_status_upstream_is_asked_only_about_public_projects(
        make_config: ConfigMaker, upstream: tuple[FakeUpstream, str]) -> None:
    """A private-only name asked upstream tells upstream it exists here (issue 22, item 5)."""
    fake, url = upstream
    loaded = config.load(str(make_config(
        upstream={"url": url}, access={"public_projects": ["Demo"]},
        repos={"demo": {"url": "/srv/demo", "distribution": "demo"},
               "other": {"url": "/srv/other", "distribution": "other"}})))
    _record(loaded, "demo", "demo", "9.5.17+insiders.4.53.6", "9.5.17-insiders-4.53.6")
    _record(loaded, "other", "other", "0.9", "0.9")
    rows = {row.key: row for row in status.collect(loaded).repositories}
    assert fake.requests == ["/simple/demo/"]
    assert rows["demo"].upstream_version == "9.5.18"
    assert (rows["other"].upstream_version, rows["other"].warning) == (None, None)


def test_status_snapshot_reads_back_what_was_written(make_config: ConfigMaker) -> None:
    path = make_config(repos={"demo": {"url": "/srv/demo"}})
    loaded = config.load(str(path))
    record = repo_state.RepoState("demo", last_check=1.0, last_result="failed", failures=2)
    record.failed_builds["1.0"] = repo_state.FailedBuild(tag="v1.0", commit="c" * 40, failures=3,
                                                         next_attempt=1_800_000_000.0)
    record.last_build = repo_state.BuildRecord(tag="v0.9", version="0.9", result="ok", time=1.0,
                                               files=["demo-0.9.tar.gz"])
    repo_state.save(loaded, record)
    written = status.refresh(loaded)
    assert Snapshot.in_cache(loaded.paths.cache).read() == written
    assert written.repositories[0].failed_builds[0].tag == "v1.0"
    assert written.repositories[0].last_build is not None
    assert written.repositories[0].last_build.files == ("demo-0.9.tar.gz",)


def test_status_service_refreshes_in_the_background_and_requests_ask_nobody(
        make_config: ConfigMaker, upstream: tuple[FakeUpstream, str]) -> None:
    """The real service: its parent computes the report (asking upstream about public names
    only); two hundred requests later upstream has been asked nothing more."""
    fake, url = upstream
    path = make_config(upstream={"url": url}, access={"public_projects": ["demo"]},
                       repos={"demo": {"url": "/srv/demo", "distribution": "demo"},
                              "other": {"url": "/srv/other", "distribution": "other"}})
    loaded = config.load(str(path))
    _record(loaded, "demo", "demo", "9.5.17+insiders.4.53.6", "9.5.17-insiders-4.53.6")
    _record(loaded, "other", "other", "0.9", "0.9")

    def upstream_version() -> object:
        reply = request(served.url, "/status.json")
        rows = json.loads(reply.body)["repositories"] if reply.status == 200 else []
        return {r["key"]: r["upstream_version"] for r in rows}.get("demo")

    with serve_process(path) as served:
        assert wait_for(lambda: upstream_version() == "9.5.18")
        asked = fake.count("/simple/")
        for _ in range(200):
            assert request(served.url, "/status.json").status == 200
    assert fake.requests[:asked] == ["/simple/demo/"] * asked
    assert fake.count("/simple/") == asked


# --------------------------------------------------------------------------- a member of the service's group

# In a mount namespace of its own (nothing outside sees it): an /etc that holds the system
# config and the service's group, then the command as `nobody` with the groups given.
AS_GROUP_MEMBER = textwrap.dedent("""\
    set -eu
    config=$1 gid=$2 groups=$3 scratch=$4; shift 4
    mount --make-rprivate /
    mount -t tmpfs scratch "$scratch"
    mkdir "$scratch/upper" "$scratch/work"
    mount -t overlay overlay -o "lowerdir=/etc,upperdir=$scratch/upper,workdir=$scratch/work" /etc
    mkdir -p /etc/pypi-insiders
    cp "$config" /etc/pypi-insiders/config.toml
    getent group pypi-insiders >/dev/null || echo "pypi-insiders:x:$gid:" >> /etc/group
    exec setpriv --reuid=65534 --regid=65534 --groups="$groups" "$@"
""")


def _free_gid() -> int:
    try:
        return grp.getgrnam("pypi-insiders").gr_gid
    except KeyError:
        return next(gid for gid in range(64000, 65000) if not _gid_taken(gid))


def _gid_taken(gid: int) -> bool:
    try:
        grp.getgrgid(gid)
    except KeyError:
        return False
    return True


@pytest.fixture
def system_tree() -> Iterator[Path]:
    """A tree `nobody` may traverse (pytest's own is root's alone), removed afterwards."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv"):
        pytest.skip("needs root, unshare and setpriv to run a command as a group member")
    path = Path(tempfile.mkdtemp(prefix="pypi-insiders-test-"))
    path.chmod(0o755)
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount --make-rprivate / && "
                            f"mount -t tmpfs probe {path} && mkdir {path}/u {path}/w && mount -t overlay "
                            f"overlay -o lowerdir=/etc,upperdir={path}/u,workdir={path}/w /etc"],
                           capture_output=True, text=True, timeout=30, check=False)
    if probe.returncode != 0:
        shutil.rmtree(path)
        pytest.skip(f"no overlay over /etc in a mount namespace here: {probe.stderr.strip()}")
    yield path
    shutil.rmtree(path)


def test_status_group_member_reads_the_system_state(system_tree: Path) -> None:
    """`status` and `check-config` by a member of the group: the system's, not an empty per-user
    state (issue 22, item 9); a user outside the group keeps the per-user default."""
    gid = _free_gid()
    data, cache, etc = system_tree / "lib", system_tree / "cache", system_tree / "etc"
    system_toml = system_tree / "config.toml"
    system_toml.write_text(to_toml({
        "paths": {"data": str(data), "cache": str(cache)},
        "upload": {"users_file": str(etc / "users")},
        "fetch": {"repos_dir": str(etc / "repos.d"), "credentials_dir": str(etc / "credentials")},
        "repos": {"demo": {"url": "/srv/demo", "distribution": "demo"}}}))
    loaded = config.load(str(system_toml))
    _record(loaded, "demo", "demo", "1.0", "v1.0")
    for directory in (data, cache):  # what the package's postinst and the units' UMask=0027 make
        directory.mkdir(exist_ok=True)
        for path in (directory, *directory.rglob("*")):
            os.chown(path, 0, gid)
            path.chmod(0o750 if path.is_dir() else 0o640)
    (system_tree / "scratch").mkdir()
    (system_tree / "home").mkdir()
    # The code under test as `nobody` may read it: the Debian build runs from a copy under a
    # directory only root may enter (mktemp -d), so its own copy would not import.
    code = system_tree / "code"
    shutil.copytree(Path(pypi_insiders.__file__).resolve().parent, code / "pypi_insiders",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for path in (code, *code.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)

    def as_nobody(groups: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**cli_env(), "HOME": str(system_tree / "home"), "PYTHONPATH": str(code)}
        for name in ("PYPI_INSIDERS_CONFIG", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
            env.pop(name, None)
        return subprocess.run(
            ["unshare", "-m", "sh", "-c", AS_GROUP_MEMBER, "as-group-member", str(system_toml), str(gid),
             groups, str(system_tree / "scratch"), sys.executable, "-m", "pypi_insiders", *args],
            capture_output=True, text=True, timeout=120, env=env, cwd=system_tree, check=False)

    member = as_nobody(f"{gid}", "status", "--json")
    assert member.returncode == 0, member.stderr
    rows = json.loads(member.stdout)["repositories"]
    assert [(r["key"], r["last_check"], r["newest_build"]) for r in rows] == [
        ("demo", "2027-01-15T08:00:00Z", "1.0")]
    checked = as_nobody(f"{gid}", "check-config")
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("/etc/pypi-insiders/config.toml: OK\n")
    assert ("config: /etc/pypi-insiders/config.toml (the system file, read as a member of the group "
            "pypi-insiders)") in checked.stdout
    assert f"state: {data}" in checked.stdout
    outsider = as_nobody("65534", "status")  # not in the group: the per-user default, as before
    assert outsider.returncode == 0, outsider.stderr
    assert "no repositories watched" in outsider.stdout
    assert "embedded default" in as_nobody("65534", "check-config").stdout
