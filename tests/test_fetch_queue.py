"""The fetch queue: one entry per repository, created whole, claimed once, damaged ones removed."""

from __future__ import annotations

from pathlib import Path

from pypi_insiders import fetch_queue


def test_fetch_queue_enqueue_coalesces_and_claim_takes_each_once(tmp_path: Path) -> None:
    queue = tmp_path / "state" / "fetch-queue"
    assert fetch_queue.enqueue(queue, "a/b") is True  # makes the directory on the first push
    assert fetch_queue.enqueue(queue, "a/b") is False
    assert fetch_queue.enqueue(queue, "a-b") is True  # a different key, a different file
    assert sorted(key for key, _ in fetch_queue.pending(queue)) == ["a-b", "a/b"]
    assert not list(queue.glob(".*"))  # no temp file left behind
    assert fetch_queue.claim(queue, {"a-b"}) == ["a-b"]
    assert fetch_queue.claim(queue) == ["a/b"]
    assert fetch_queue.claim(queue) == []
    assert fetch_queue.enqueue(queue, "a/b") is True  # claimed: the next push queues again


def test_fetch_queue_a_damaged_entry_is_removed_not_left_to_loop(tmp_path: Path) -> None:
    queue = tmp_path / "fetch-queue"
    queue.mkdir()
    (queue / "junk.queued").write_bytes(b"\xff\xfe")
    (queue / "empty.queued").write_bytes(b"")
    assert fetch_queue.claim(queue) == []
    assert list(queue.iterdir()) == []
