"""Counts, sizes and times as every message shows them (wording.py)."""

from __future__ import annotations

import time

import pytest

from pypi_insiders import wording


@pytest.mark.parametrize(("count", "noun", "plural", "text"), [
    (0, "project", None, "0 projects"), (1, "project", None, "1 project"), (2, "user", None, "2 users"),
    (1, "repository", "repositories", "1 repository"), (3, "repository", "repositories", "3 repositories"),
    (1, "new tag", None, "1 new tag"), (5, "new tag", None, "5 new tags"),
])
def test_wording_counted_agrees_with_its_number(count: int, noun: str, plural: str | None, text: str) -> None:
    assert wording.counted(count, noun, plural) == text


def test_wording_utc_names_its_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "NZST-12")  # never the local time, whatever the machine's zone
    time.tzset()
    try:
        assert time.localtime(1_800_000_000).tm_hour == 20  # the zone took effect
        assert wording.utc(1_800_000_000) == "2027-01-15T08:00:00Z"
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize(("count", "text"), [
    (0, "0 bytes"), (1, "1 byte"), (1023, "1023 bytes"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
    (1024**2, "1.0 MiB"), (10 * 1024**3, "10.0 GiB"), (2048 * 1024**4, "2048.0 TiB"),
])
def test_wording_size_in_powers_of_1024(count: int, text: str) -> None:
    assert wording.size(count) == text
