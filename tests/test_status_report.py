"""The status report's snapshot: what a serving process reads back, and what it refuses."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from pypi_insiders.status_report import (
    FailedBuild,
    LastBuild,
    MirrorStatus,
    RepoStatus,
    Snapshot,
    StatusReport,
    write_snapshot,
)

BUILD = LastBuild(tag="v1", version="1", result="ok", time=None, files=("a.whl",))
FAILED = FailedBuild(version="2", tag="v2", failures=1, next_attempt=None)
REPORT = StatusReport(generated="2027-01-15T08:00:00Z", next_run="Fri 2027-01-15 09:00:00 UTC", repositories=(
    RepoStatus(key="demo", url="/srv/demo", distribution="demo", failures=1, last_build=BUILD,
               failed_builds=(FAILED,)),))


def test_status_report_snapshot_round_trip(tmp_path: Path) -> None:
    write_snapshot(tmp_path / "status.json", REPORT)
    assert Snapshot.in_cache(tmp_path).read() == REPORT


def test_status_report_snapshot_round_trip_with_the_mirror(tmp_path: Path) -> None:
    mirror = MirrorStatus(bytes_used=10, files=1, max_size=None, min_free=0, free_disk=None, offline=True,
                          hits=2, last_upstream_error="http://127.0.0.1:1/simple/x/ answered 500",
                          last_upstream_error_at="2027-01-15T08:00:00Z", scanned_at="2027-01-15T08:00:01Z")
    report = replace(REPORT, mirror=mirror)
    write_snapshot(tmp_path / "status.json", report)
    assert Snapshot.in_cache(tmp_path).read() == report


def test_status_report_snapshot_of_another_version_still_reads(tmp_path: Path) -> None:
    """A field added later (unknown here) is ignored; one this version has but the file lacks
    takes its default: an upgrade never shows a broken /status while the parent catches up."""
    data = REPORT.as_json()
    data["queue"] = {"waiting": 3}
    data["repositories"][0]["pushed_by"] = "2027-01-15T08:00:00Z"
    del data["repositories"][0]["warning"]
    (tmp_path / "status.json").write_text(json.dumps(data))
    assert Snapshot.in_cache(tmp_path).read() == REPORT


@pytest.mark.parametrize("content", [
    b"", b"\xff", b"[]", b'{"generated": 1}', b'{"next_run": null}',
    b'{"generated": null, "repositories": {}}',
    b'{"generated": null, "repositories": [{"key": "x"}]}',
    b'{"generated": null, "repositories": [{"key": "x", "url": "u", "failed_builds": [1]}]}',
    b'{"generated": null, "mirror": {"bytes_used": 1}}',
    b'{"generated": null, "mirror": {"bytes_used": "1", "files": 0, "max_size": null, "min_free": 0, '
    b'"free_disk": null, "offline": false}}',
])
def test_status_report_snapshot_that_is_not_one_reads_as_none(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "status.json").write_bytes(content)
    assert Snapshot.in_cache(tmp_path).read() is None


def test_status_report_snapshot_missing_reads_as_none(tmp_path: Path) -> None:
    assert Snapshot.in_cache(tmp_path).read() is None
