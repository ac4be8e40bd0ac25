"""The fetcher's side of the fetch queue: claim before any work, only the queued repositories
when the path unit started the run, every one on the timer, a busy lock waited for."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from pypi_insiders import config, fetch_queue
from pypi_insiders.cli import main
from pypi_insiders.errors import LockedError
from pypi_insiders.fetch import repo_state, runner
from pypi_insiders.units import FETCH_PATH, FETCH_TIMER
from tests.conftest import ConfigMaker
from tests.support import git_fixtures as g


def _repos(make_config: ConfigMaker, tmp_path: Path) -> config.Config:
    """Two real repositories without version tags: an update fetches them and builds nothing."""
    one = g.init_repo(tmp_path / "one", g.intree_files("one"))
    two = g.init_repo(tmp_path / "two", g.intree_files("two"))
    return config.load(str(make_config(repos={"one": {"url": str(one)}, "two": {"url": str(two)},
                                              "broken": {"url": str(tmp_path / "missing")}})))


def _checked(loaded: config.Config) -> set[str]:
    return {r.key for r in loaded.repos if repo_state.load(loaded, r.key).last_check is not None}


def _queue(loaded: config.Config) -> Path:
    return fetch_queue.queue_dir(loaded.paths.state)


def test_fetch_started_by_the_path_unit_updates_only_the_queued(make_config: ConfigMaker, tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    loaded = _repos(make_config, tmp_path)
    fetch_queue.enqueue(_queue(loaded), "two")
    fetch_queue.enqueue(_queue(loaded), "no-longer-configured")
    assert runner.cli_fetch(loaded, trigger=FETCH_PATH) == 0
    assert _checked(loaded) == {"two"}
    assert fetch_queue.pending(_queue(loaded)) == []
    assert any("'no-longer-configured' is not configured" in r.getMessage() for r in caplog.records)
    assert any(f"started by {FETCH_PATH}: 1 queued repository" in r.getMessage() for r in caplog.records)


def test_fetch_a_failing_queued_repository_leaves_no_entry(make_config: ConfigMaker, tmp_path: Path) -> None:
    """The entry is claimed before the fetch: a failure cannot restart the path unit in a loop."""
    loaded = _repos(make_config, tmp_path)
    fetch_queue.enqueue(_queue(loaded), "broken")
    assert runner.cli_fetch(loaded, trigger=FETCH_PATH) == 1
    assert fetch_queue.pending(_queue(loaded)) == []
    assert repo_state.load(loaded, "broken").failures == 1


def test_fetch_with_an_empty_queue_on_the_path_unit_does_nothing(make_config: ConfigMaker,
                                                                 tmp_path: Path) -> None:
    loaded = _repos(make_config, tmp_path)
    assert runner.cli_fetch(loaded, trigger=FETCH_PATH) == 0
    assert _checked(loaded) == set()


@pytest.mark.parametrize("trigger", [FETCH_TIMER, None])
def test_fetch_on_the_timer_updates_every_repository_and_claims_the_queue(
        make_config: ConfigMaker, tmp_path: Path, trigger: str | None) -> None:
    loaded = _repos(make_config, tmp_path)
    fetch_queue.enqueue(_queue(loaded), "two")
    assert runner.cli_fetch(loaded, trigger=trigger) == 1  # "broken" fails
    assert _checked(loaded) == {"one", "two", "broken"}
    assert fetch_queue.pending(_queue(loaded)) == []
    first, then = repo_state.load(loaded, "two").last_check, repo_state.load(loaded, "one").last_check
    assert first is not None
    assert then is not None
    assert first <= then  # the queued one first


def test_fetch_waits_for_a_busy_lock_and_update_does_not(make_config: ConfigMaker, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    loaded = _repos(make_config, tmp_path)
    fetch_queue.enqueue(_queue(loaded), "one")
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with runner.run_lock(loaded.paths.state / "update.lock"):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        with pytest.raises(LockedError):
            runner.cli_update(loaded, ["one"])
        assert [k for k, _ in fetch_queue.pending(_queue(loaded))] == ["one"]  # update claimed nothing
        threading.Timer(0.5, release.set).start()
        began = time.monotonic()
        assert runner.cli_fetch(loaded, trigger=FETCH_PATH) == 0
        assert time.monotonic() - began >= 0.4
    finally:
        release.set()
        holder.join(10)
    assert _checked(loaded) == {"one"}
    assert any("waiting for it" in r.getMessage() for r in caplog.records)


def test_fetch_command_reads_the_trigger_from_systemd(make_config: ConfigMaker, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = _repos(make_config, tmp_path)
    fetch_queue.enqueue(_queue(loaded), "one")
    monkeypatch.setenv("TRIGGER_UNIT", FETCH_PATH)
    assert main(["--config", str(loaded.path), "fetch"]) == 0
    assert _checked(loaded) == {"one"}


def test_update_named_repositories_claim_only_their_entries(make_config: ConfigMaker, tmp_path: Path) -> None:
    loaded = _repos(make_config, tmp_path)
    fetch_queue.enqueue(_queue(loaded), "one")
    fetch_queue.enqueue(_queue(loaded), "two")
    assert runner.cli_update(loaded, ["one"]) == 0
    assert [k for k, _ in fetch_queue.pending(_queue(loaded))] == ["two"]


def test_fetch_path_run_takes_what_is_queued_meanwhile(make_config: ConfigMaker, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """A push during (or just after) a pass is taken by the same run: a burst is one run."""
    caplog.set_level(logging.INFO)
    loaded = _repos(make_config, tmp_path)
    fetch_queue.enqueue(_queue(loaded), "one")
    later = threading.Timer(0.3, fetch_queue.enqueue, (_queue(loaded), "one"))
    later.start()
    began = time.monotonic()
    try:
        assert runner.cli_fetch(loaded, trigger=FETCH_PATH) == 0
    finally:
        later.join(10)
    assert time.monotonic() - began >= runner.SETTLE
    assert fetch_queue.pending(_queue(loaded)) == []
    passes = [r.getMessage() for r in caplog.records if getattr(r, "STEP", None) == "queue"]
    assert passes == [f"started by {FETCH_PATH}: 1 queued repository",
                      "queued during the run: 1 queued repository"]
