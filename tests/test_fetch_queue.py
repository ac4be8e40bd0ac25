"""The fetch queue: one entry per repository, created whole, claimed once, damaged ones removed."""

from __future__ import annotations

import fnmatch
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


def test_fetch_queue_the_path_unit_watches_exactly_the_entries() -> None:
    """The unit's glob and this module's names are one contract: entries match it, temp files do not."""
    unit = Path(__file__).resolve().parent.parent / "systemd" / "pypi-insiders-fetch.path"
    lines = unit.read_text().splitlines()
    globs = [line.split("=", 1)[1] for line in lines if line.startswith("PathExistsGlob=")]
    state = Path("/var/lib/pypi-insiders")
    assert globs == [f"{fetch_queue.queue_dir(state)}/*{fetch_queue.SUFFIX}"]
    name = fetch_queue.entry_name("team/project")
    assert fnmatch.fnmatch(name, f"*{fetch_queue.SUFFIX}")
    assert not fnmatch.fnmatch(f".{name}.0123abcd.tmp", f"*{fetch_queue.SUFFIX}")
