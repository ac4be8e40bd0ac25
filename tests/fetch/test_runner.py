"""End-to-end tier of the fetcher: `update` runs over real repositories, real builds, the real store."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from dulwich.repo import Repo

from pypi_insiders import config, provenance
from pypi_insiders.errors import LockedError, UsageError
from pypi_insiders.fetch import repo_state, runner, status
from pypi_insiders.provenance import Origin, Provenance
from pypi_insiders.store import Store
from pypi_insiders.web import status_page
from tests.conftest import ConfigMaker, to_toml
from tests.support import git_fixtures as g
from tests.support.distfiles import make_sdist
from tests.support.process_fixtures import gone_within, processes_in, sandboxed
from tests.support.server_fixtures import VENV_BIN, request, serve_process, service_env, wait_for

TOKEN = "runner-token"


def _store_files(loaded: config.Config) -> set[str]:
    return {entry.relpath for entry in Store(loaded.paths.store).walk()}


def _intree_repo(root: Path, name: str, *tags: str, extra: dict[str, str] | None = None) -> Path:
    repo = g.init_repo(root / name, {**g.intree_files(name), **(extra or {})})
    for tag in tags:
        g.tag(repo, tag)
    return repo


def test_update_unknown_repository_is_a_usage_error(make_config: ConfigMaker) -> None:
    loaded = config.load(str(make_config(repos={"known": {"url": "/nowhere"}})))
    with pytest.raises(UsageError, match="unknown repository 'unknown'"):
        runner.cli_update(loaded, ["unknown"])


def test_update_refuses_to_overlap_with_a_running_update(loaded_config: config.Config) -> None:
    with runner.run_lock(loaded_config.paths.state / "update.lock"), \
            pytest.raises(LockedError, match="another update is running"):
        runner.cli_update(loaded_config, [])


def test_update_backoff_is_logged_in_utc_with_its_zone(make_config: ConfigMaker, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """As `status` shows it, whatever the machine's time zone."""
    loaded = config.load(str(make_config(repos={"gone": {"url": str(tmp_path / "missing")}})))
    assert runner.cli_update(loaded, []) == 1
    caplog.set_level(logging.INFO)
    assert runner.cli_update(loaded, []) == 0
    due = repo_state.load(loaded, "gone").next_attempt
    assert due is not None
    assert (f"gone: waiting after 1 failure until {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(due))} "
            "(use --force to retry now)") in caplog.messages
    assert "1 repository: 0 updated, 0 unchanged, 0 failed, 1 waiting after failures" in caplog.messages


@pytest.mark.slow
def test_update_builds_a_tag_pushed_after_the_first_run(make_config: ConfigMaker, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    upstream = _intree_repo(tmp_path, "demo-pkg", "v1.0")
    with g.git_http_server({"demo": upstream}, "x-access-token", TOKEN) as server:
        credentials = tmp_path / "credentials"
        credentials.mkdir()
        (credentials / "tok").write_text(TOKEN)
        (credentials / "tok").chmod(0o600)
        loaded = config.load(str(make_config(repos={"demo": {"url": f"{server.url}/demo",
                                                              "credential": "tok"}})))
        assert runner.cli_update(loaded, []) == 0
        assert _store_files(loaded) == {"demo-pkg/demo_pkg-1.0-py3-none-any.whl",
                                        "demo-pkg/demo_pkg-1.0.tar.gz"}
        assert repo_state.load(loaded, "demo").distribution == "demo-pkg"  # learned from the built metadata
        origin = Provenance(loaded.paths.state).of("demo_pkg-1.0.tar.gz")
        assert origin is not None
        assert (origin.repo, origin.url, origin.tag) == ("demo", f"{server.url}/demo", "v1.0")
        assert origin.commit == Repo(str(upstream)).head().decode()  # v1.0 is the HEAD commit
        published = [r for r in caplog.records if getattr(r, "STEP", None) == "publish"]
        assert len(published) == 2  # journalctl PROJECT=demo-pkg finds them
        assert {getattr(r, "PROJECT", None) for r in published} == {"demo-pkg"}

        posts, store_before = server.upload_pack_posts(), _store_files(loaded)
        caplog.clear()
        assert runner.cli_update(loaded, []) == 0  # unchanged remote: no pack, no build
        assert server.upload_pack_posts() == posts
        assert _store_files(loaded) == store_before
        assert "building" not in caplog.text
        assert "1 repository: 0 updated, 1 unchanged, 0 failed" in caplog.text
        assert repo_state.load(loaded, "demo").last_result == "unchanged"

        g.commit_files(upstream, {"CHANGELOG": "1.1\n"})
        g.tag(upstream, "v1.1")
        caplog.clear()
        assert runner.cli_update(loaded, ["demo"]) == 0
        steps = [r for r in caplog.records if getattr(r, "STEP", None) in ("build", "publish")]
        assert len(steps) == 3  # building, and two files published
        assert {getattr(r, "PROJECT", None) for r in steps} == {"demo-pkg"}  # known from the first build
        assert server.upload_pack_posts() == posts + 1
    assert "demo-pkg/demo_pkg-1.1-py3-none-any.whl" in _store_files(loaded)
    record = repo_state.load(loaded, "demo")
    assert record.built == {"1.0": "v1.0", "1.1": "v1.1"}
    assert record.last_build is not None
    assert record.last_build.result == "ok"
    assert TOKEN not in caplog.text


@pytest.mark.slow
def test_update_failing_repository_does_not_stop_another(make_config: ConfigMaker, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    broken = _intree_repo(tmp_path, "broken", "v1.0", extra={"FAIL": "yes\n"})
    good = _intree_repo(tmp_path, "good", "v2.0")
    loaded = config.load(str(make_config(repos={
        "broken": {"url": str(broken)}, "gone": {"url": str(tmp_path / "missing")},
        "good": {"url": str(good)},
    })))
    assert runner.cli_update(loaded, []) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len([m for m in errors if "build failed" in m]) == 1, errors  # the build error, once
    assert errors[-1] == ("3 repositories: 1 updated, 0 unchanged, 2 failed "
                          "(broken: build of v1.0 failed: RuntimeError: this build fails on purpose; "
                          "gone: cannot be fetched)")
    caplog.clear()
    assert _store_files(loaded) == {"good/good-2.0-py3-none-any.whl", "good/good-2.0.tar.gz"}
    for key, message in (("broken", "build failed"), ("gone", "not found or not a git repository")):
        record = repo_state.load(loaded, key)
        assert record.failures == 1
        assert record.last_error is not None
        assert message in record.last_error
    gone = repo_state.load(loaded, "gone")
    assert gone.next_attempt is not None
    assert gone.next_attempt > time.time()
    broken_state = repo_state.load(loaded, "broken")
    assert broken_state.next_attempt is None  # a failed build holds back only its own version
    assert broken_state.failed_builds["1.0"].failures == 1
    assert broken_state.failed_builds["1.0"].next_attempt > time.time()
    assert broken_state.last_build is not None
    assert (broken_state.last_build.tag, broken_state.last_build.result) == ("v1.0", "failed")

    assert runner.cli_update(loaded, []) == 0  # both broken ones wait out their back-off
    assert "3 repositories: 0 updated, 1 unchanged, 0 failed, 2 waiting after failures" in caplog.text
    broken_state = repo_state.load(loaded, "broken")
    assert (broken_state.failures, broken_state.last_result) == (1, "waiting")
    assert broken_state.last_error is not None
    assert "build failed" in broken_state.last_error
    assert runner.cli_update(loaded, ["gone"], force=True) == 1
    assert repo_state.load(loaded, "gone").failures == 2

    report = status.collect(loaded)
    rows = {row.key: row for row in report.repositories}
    assert rows["good"].newest_tag == "v2.0"
    assert rows["good"].last_build is not None
    assert rows["good"].last_build.result == "ok"
    assert "build failed" in (rows["broken"].last_error or "")
    assert [(b.version, b.failures) for b in rows["broken"].failed_builds] == [("1.0", 1)]
    assert "broken" in status_page.render_html(report)


@pytest.mark.slow
def test_update_a_broken_tag_does_not_hold_back_newer_ones(make_config: ConfigMaker, tmp_path: Path) -> None:
    """v1.0 fails; v1.1, pushed later, builds at the next run; moving v1.0 to a fix retries it."""
    repo = _intree_repo(tmp_path, "demo-pkg", "v1.0", extra={"FAIL": "yes\n"})
    loaded = config.load(str(make_config(repos={"demo": {"url": str(repo)}})))
    assert runner.cli_update(loaded, []) == 1
    assert _store_files(loaded) == set()

    g.remove_files(repo, ["FAIL"])
    g.tag(repo, "v1.1")
    assert runner.cli_update(loaded, []) == 0  # v1.1 built, v1.0 waits on its own back-off
    assert _store_files(loaded) == {"demo-pkg/demo_pkg-1.1-py3-none-any.whl", "demo-pkg/demo_pkg-1.1.tar.gz"}
    record = repo_state.load(loaded, "demo")
    assert record.next_attempt is None
    assert set(record.failed_builds) == {"1.0"}
    # why v1.0 failed stays on show after v1.1 built: the backend's error, not "see the log"
    shown = status.collect(loaded).repositories[0]
    assert shown.last_build is not None
    assert shown.last_build.result == "ok"
    assert shown.failed_builds[0].error == (
        "repository demo tag v1.0: build failed (exit status 1): RuntimeError: this build fails on purpose")

    g.tag(repo, "v1.0", force=True)  # the tag now points at the fixed commit: retried at once
    assert runner.cli_update(loaded, []) == 0
    assert "demo-pkg/demo_pkg-1.0-py3-none-any.whl" in _store_files(loaded)
    record = repo_state.load(loaded, "demo")
    assert record.failed_builds == {}
    assert (record.last_result, record.last_error, record.failures) == ("updated", None, 0)



def _update_process(config_path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "pypi_insiders", "-c", str(config_path), "update"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_for_file(path: Path, process: subprocess.Popen[Any], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, "the update ended before the build started"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.slow
def test_update_killed_midway_leaves_nothing_in_the_store(make_config: ConfigMaker, tmp_path: Path) -> None:
    # the gate is in the tree (the sandbox shows the build nothing else): it hangs for 120 s
    upstream = _intree_repo(tmp_path, "slow", "v1.0", extra={"SLOW": "hang.gate\n", "hang.gate": ""})
    config_path = make_config(repos={"slow": {"url": str(upstream)}})
    loaded = config.load(str(config_path))
    process = _update_process(config_path)
    builds = loaded.paths.cache / "builds"
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while not sandboxed(seen := processes_in(builds)):
            assert process.poll() is None, "the update ended before the build started"
            assert time.monotonic() < deadline, "the build never started"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    # the sandbox dies with the update that started it, and every process in it
    assert all(gone_within(pid, 5.0) for pid in seen), "a build process outlived its update"
    assert not any(p.is_file() for p in loaded.paths.store.rglob("*"))
    g.remove_files(upstream, ["hang.gate"])  # the tag, moved, builds at once
    g.tag(upstream, "v1.0", force=True)
    assert runner.cli_update(loaded, []) == 0  # the lock died with the process; the next run recovers
    assert _store_files(loaded) == {"slow/slow-1.0-py3-none-any.whl", "slow/slow-1.0.tar.gz"}
    assert not any((loaded.paths.cache / "builds").iterdir())


def _kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_update_then_pip_installs_from_the_index(make_config: ConfigMaker, tmp_path: Path) -> None:
    upstream = _intree_repo(tmp_path, "fresh-insiders", "9.5.17-insiders-4.53.6")
    config_path = make_config(repos={"fresh": {"url": f"file://{upstream}"}})
    with serve_process(config_path) as served:
        assert runner.cli_update(config.load(str(config_path)), []) == 0
        target = tmp_path / "target"
        index_url = f"{served.url.rstrip('/')}/simple/"
        page = "/simple/fresh-insiders/"
        assert wait_for(lambda: b"9.5.17+insiders.4.53.6" in request(served.url, page).body,
                        timeout=10)  # the watcher has published the build
        done = subprocess.run(
            [str(VENV_BIN / "python"), "-m", "pip", "install", "--no-cache-dir", "--target", str(target),
             "--index-url", index_url, "fresh-insiders==9.5.17+insiders.4.53.6"],
            capture_output=True, text=True, timeout=120, env=service_env(), check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    assert (target / "fresh_insiders" / "__init__.py").read_text() == "VERSION = '9.5.17+insiders.4.53.6'\n"


@pytest.mark.slow
def test_update_uploads_to_a_remote_index(make_config: ConfigMaker, tmp_path: Path) -> None:
    served_config = make_config(upload={"enabled": True})
    token = subprocess.run([sys.executable, "-m", "pypi_insiders", "-c", str(served_config), "users", "add",
                            "robot", "--token", "--upload", "*"], capture_output=True, text=True, timeout=60,
                           check=True).stdout.strip()
    upstream = _intree_repo(tmp_path, "pushed", "v3.0")
    credentials = tmp_path / "fetcher-credentials"
    credentials.mkdir()
    (credentials / "upload-token").write_text(token + "\n")
    (credentials / "upload-token").chmod(0o600)
    with serve_process(served_config) as served:
        fetch_config = tmp_path / "fetch.toml"
        fetch_config.write_text(to_toml({
            "paths": {"data": str(tmp_path / "fetcher"), "cache": str(tmp_path / "fetcher-cache")},
            "upstream": {"url": "http://127.0.0.1:9/simple/", "fallback": "off"},
            "fetch": {"repos_dir": str(tmp_path / "fetcher-repos.d"), "credentials_dir": str(credentials),
                      "publish": "upload", "upload_url": f"{served.url.rstrip('/')}/legacy/",
                      "upload_username": "robot", "upload_credential": "upload-token"},
            "repos": {"pushed": {"url": str(upstream)}}}))
        loaded = config.load(str(fetch_config))
        assert runner.cli_update(loaded, []) == 0
        remote = config.load(str(served_config))
        assert _store_files(remote) == {"pushed/pushed-3.0-py3-none-any.whl", "pushed/pushed-3.0.tar.gz"}
        assert _store_files(loaded) == set()
        repo_state.path_of(loaded, "pushed").unlink()  # forget the build: the target already has the files
        assert runner.cli_update(loaded, []) == 0
        assert _store_files(remote) == {"pushed/pushed-3.0-py3-none-any.whl", "pushed/pushed-3.0.tar.gz"}
    assert token not in served.output()


@pytest.mark.slow
def test_update_keeps_a_file_published_by_an_earlier_run(make_config: ConfigMaker, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """A run killed between the sdist and the wheel: the next one adds the wheel, keeps the sdist."""
    upstream = _intree_repo(tmp_path, "half", "v1.0")
    loaded = config.load(str(make_config(repos={"half": {"url": str(upstream)}})))
    earlier = make_sdist(loaded.paths.store / "half", "half", "1.0")
    # as the killed run did before the file appeared: the name stays this repository's
    provenance.record(loaded.paths.state, [earlier.name], Origin(repo="half", url=str(upstream), tag="v1.0",
                                                                      commit="0" * 40))
    before = earlier.read_bytes()
    assert runner.cli_update(loaded, []) == 0
    assert _store_files(loaded) == {"half/half-1.0-py3-none-any.whl", "half/half-1.0.tar.gz"}
    assert earlier.read_bytes() == before
    assert "kept the file already in the store" in caplog.text


def test_update_unreachable_https_repository_is_one_error_line(make_config: ConfigMaker,
                                                              free_port: int) -> None:
    path = make_config(repos={"far": {"url": f"https://127.0.0.1:{free_port}/far.git"}})
    done = subprocess.run([sys.executable, "-m", "pypi_insiders", "-c", str(path), "update"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert "Retrying" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: repository far (https://127.0.0.1:{free_port}/far.git): cannot fetch: "
        "Failed to establish a new connection: [Errno 111] Connection refused",
        "error: 1 repository: 0 updated, 0 unchanged, 1 failed (far: cannot be fetched)"]
