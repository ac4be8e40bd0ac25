"""Local mode's path unit: a queued repository wakes the watcher, temp files and deletions do not."""

from __future__ import annotations

import threading
from pathlib import Path

from pypi_insiders import config, fetch_queue
from pypi_insiders.fetch import repo_state
from pypi_insiders.service import watch
from pypi_insiders.service.queue_watch import QUEUED, QueueWatch
from pypi_insiders.service.watch import STOP, Wake, Watcher
from tests.conftest import ConfigMaker
from tests.support import git_fixtures as g


class _Wakes:
    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.event = threading.Event()

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)
        self.event.set()

    def wait(self) -> bool:
        found = self.event.wait(5)
        self.event.clear()
        return found


def test_queue_watch_wakes_on_an_entry_not_on_a_temp_file(tmp_path: Path) -> None:
    queue = tmp_path / "state" / "fetch-queue"
    wakes = _Wakes()
    watch = QueueWatch(queue, wakes)
    watch.start()
    try:
        (queue / ".x.queued.1234.tmp").write_text("a/b")  # what create_exclusive writes first
        (queue / ".x.queued.1234.tmp").unlink()
        assert not wakes.event.wait(0.5)
        assert fetch_queue.enqueue(queue, "a/b")
        assert wakes.wait()
        assert set(wakes.reasons) == {QUEUED}
        wakes.reasons.clear()
        fetch_queue.claim(queue)  # the run takes it: a deletion wakes nobody
        assert not wakes.event.wait(0.5)
    finally:
        watch.stop()


def test_queue_watch_wakes_at_start_for_what_waits(tmp_path: Path) -> None:
    queue = tmp_path / "fetch-queue"
    fetch_queue.enqueue(queue, "waiting/since/before")
    wakes = _Wakes()
    watch = QueueWatch(queue, wakes)
    watch.start()
    try:
        assert wakes.wait()
        assert wakes.reasons == [QUEUED]
    finally:
        watch.stop()


def test_queue_watch_wakes_the_watcher_whose_run_takes_only_the_queued(make_config: ConfigMaker,
                                                                      tmp_path: Path) -> None:
    """`watcher start` in local mode: a webhook's entry wakes the loop at once (the interval is an
    hour), and the woken run fetches only the queued repository, as the path unit's run does."""
    one = g.init_repo(tmp_path / "one", g.intree_files("one"))
    two = g.init_repo(tmp_path / "two", g.intree_files("two"))
    config_file = make_config(fetch={"interval": "1 hour"},
                              repos={"one": {"url": str(one)}, "two": {"url": str(two)}})
    loaded = config.load(str(config_file))
    wake = Wake()
    runs: list[list[str]] = []

    def fetch(current: config.Config, reasons: list[str]) -> int:
        runs.append(reasons)
        if reasons == ["start"]:
            queue_dir = fetch_queue.queue_dir(current.paths.state)
            threading.Timer(0.2, fetch_queue.enqueue, (queue_dir, "two")).start()
            return 0
        status = watch.fetch_all(current, reasons)
        wake.now(STOP)
        return status

    watcher = Watcher(str(config_file), loaded, wake=wake, fetch=fetch)
    queue = QueueWatch(fetch_queue.queue_dir(loaded.paths.state), wake.now)
    queue.start()
    try:
        thread = threading.Thread(target=watcher.run)
        thread.start()
        thread.join(60)
    finally:
        queue.stop()
    assert not thread.is_alive()
    assert runs == [["start"], [QUEUED]]
    checked = {key for key in ("one", "two") if repo_state.load(loaded, key).last_check is not None}
    assert checked == {"two"}
    assert fetch_queue.pending(fetch_queue.queue_dir(loaded.paths.state)) == []
