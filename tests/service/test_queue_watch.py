"""Local mode's path unit: a queued repository wakes the watcher, temp files and deletions do not."""

from __future__ import annotations

import threading
from pathlib import Path

from pypi_insiders import fetch_queue
from pypi_insiders.service.queue_watch import QUEUED, QueueWatch


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
