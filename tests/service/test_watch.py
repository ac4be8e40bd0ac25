"""The watch loop (service/watch.py): one wait for the interval or a wake-up, the config re-read."""

from __future__ import annotations

import threading
import time

import pytest

from pypi_insiders import config
from pypi_insiders.errors import LockedError
from pypi_insiders.service import watch
from pypi_insiders.service.watch import STOP, Wake, Watcher
from tests.conftest import ConfigMaker


def test_watch_wake_ends_the_wait_early_with_its_reasons() -> None:
    wake = Wake()
    started = time.monotonic()
    assert wake.wait(0.05) == []
    threading.Timer(0.05, wake.now, args=("push: demo",)).start()
    assert wake.wait(60) == ["push: demo"]
    assert time.monotonic() - started < 30
    assert wake.wait(0.01) == []  # taken reasons are gone


def test_watch_loop_runs_at_start_on_a_wake_and_rereads_the_config(make_config: ConfigMaker) -> None:
    config_file = make_config(fetch={"interval": "1 hour"})
    runs: list[tuple[tuple[str, ...], list[str]]] = []
    wake = Wake()

    def fetch(loaded: config.Config, reasons: list[str]) -> int:
        runs.append((tuple(repo.key for repo in loaded.repos), reasons))
        if len(runs) == 1:  # a repository added while the watcher waits
            make_config(fetch={"interval": "1 hour"}, repos={"late": {"url": "/nowhere"}})
            threading.Timer(0.05, wake.now, args=("push",)).start()
        else:
            wake.now(STOP)
        return 0

    watcher = Watcher(str(config_file), config.load(str(config_file)), wake=wake, fetch=fetch)
    thread = threading.Thread(target=watcher.run)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    assert runs == [((), ["start"]), (("late",), ["push"])]


def test_watch_refuses_a_second_watcher_on_the_same_state(make_config: ConfigMaker) -> None:
    loaded = config.load(str(make_config()))
    entered = threading.Event()
    wake = Wake()

    def fetch(_loaded: config.Config, _reasons: list[str]) -> int:
        entered.set()
        return 0

    first = Watcher(None, loaded, wake=wake, fetch=fetch)
    thread = threading.Thread(target=first.run)
    thread.start()
    try:
        assert entered.wait(30)
        with pytest.raises(LockedError, match="another watcher is running"):
            Watcher(None, loaded, fetch=fetch).run()
    finally:
        wake.now(STOP)
        thread.join(30)


@pytest.mark.parametrize(("seconds", "text"), [(3600, "1 hour"), (900, "15 minutes"), (86400, "1 day"),
                                               (90, "90 s"), (1.5, "1.5 s")])
def test_watch_describe_reads_like_the_config(seconds: float, text: str) -> None:
    assert watch.describe(seconds) == text


def test_watch_loop_runs_again_when_the_interval_is_over(make_config: ConfigMaker) -> None:
    config_file = make_config(fetch={"interval": "1 second"})
    wake = Wake()
    runs: list[tuple[float, list[str]]] = []

    def fetch(_loaded: config.Config, reasons: list[str]) -> int:
        runs.append((time.monotonic(), reasons))
        if len(runs) == 2:
            wake.now(STOP)
        return 0

    Watcher(str(config_file), config.load(str(config_file)), wake=wake, fetch=fetch).run()
    assert [reasons for _at, reasons in runs] == [["start"], ["interval"]]
    assert runs[1][0] - runs[0][0] >= 0.9
