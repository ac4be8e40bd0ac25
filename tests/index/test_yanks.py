"""`<state>/yanked.json` (index/yanks.py) on disk: what is written, and bad files read back."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from pypi_insiders.errors import UsageError
from pypi_insiders.index.yanks import YankState
from pypi_insiders.state_layout import StateLayout


def test_yanks_state_yank_and_unyank_round_trip(tmp_path: Path) -> None:
    state = YankState(tmp_path)
    assert state.yank("Demo_Pkg", "1.0.0", "broken", "alice (API)")
    assert not state.yank("demo-pkg", "1.0.0", "broken", "bob")  # same reason: no change
    assert YankState(tmp_path).reasons() == {"demo-pkg": {"1.0.0": "broken"}}
    written = json.loads(StateLayout(tmp_path).yanks.read_text())
    assert written["demo-pkg"]["1.0.0"]["by"] == "alice (API)"
    assert written["demo-pkg"]["1.0.0"]["at"] > 0
    assert state.unyank("demo-pkg", "1.0.0", "alice")
    assert not state.unyank("demo-pkg", "1.0.0", "alice")
    assert json.loads(StateLayout(tmp_path).yanks.read_text()) == {}


@pytest.mark.parametrize(("version", "reason", "message"), [
    ("1.0 beta", "", "is not a valid version"),
    ("1.0", "two\nlines", "one line of printable characters"),
    ("1.0", "x" * 501, "longer than 500 characters"),
])
def test_yanks_state_refuses_bad_input(tmp_path: Path, version: str, reason: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        YankState(tmp_path).yank("demo", version, reason, "alice")
    assert not StateLayout(tmp_path).yanks.exists()


def test_yanks_state_unreadable_file_yanks_nothing_and_says_so(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    StateLayout(tmp_path).yanks.write_text("{not json")
    with caplog.at_level(logging.ERROR):
        assert YankState(tmp_path).reasons() == {}
    assert f"{StateLayout(tmp_path).yanks} is unreadable" in caplog.text


def test_yanks_state_entries_of_the_wrong_shape_are_skipped(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    StateLayout(tmp_path).yanks.write_text(json.dumps({
        "Demo": {"1.0": {"reason": "ok", "by": "a", "at": 1}, "2.0": "not a table", "3.0": {"reason": 7}},
        "other": ["not", "a", "table"]}))
    with caplog.at_level(logging.WARNING):
        assert YankState(tmp_path).reasons() == {"demo": {"1.0": "ok"}}
    assert "Demo 2.0: not a yank entry" in caplog.text
