"""`/status` as HTML: escaped, whatever the state files and the config hold."""

from __future__ import annotations

import json

from pypi_insiders.status_report import FailedBuild, LastBuild, MirrorStatus, RepoStatus, StatusReport
from pypi_insiders.web import status_page


def test_status_page_escapes_what_it_shows() -> None:
    page = status_page.render_html(StatusReport(generated="now", next_run=None, repositories=(RepoStatus(
        key="<b>x</b>", url="", distribution=None, last_check=None, newest_tag=None, last_build=None,
        last_result="failed", next_attempt=None, last_error="<script>alert(1)</script>",
        warning=None),)))
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page


def test_status_page_shows_a_failed_builds_cause_after_newer_tags_built() -> None:
    page = status_page.render_html(StatusReport(generated="now", next_run=None, repositories=(RepoStatus(
        key="demo", url="", distribution="demo", last_check=None, newest_tag="v1.1",
        last_build=LastBuild(tag="v1.1", version="1.1", result="ok", time=None), last_result="updated",
        next_attempt=None, last_error=None, warning=None, failed_builds=(FailedBuild(
            version="1.0", tag="v1.0", failures=1, next_attempt=None,
            error="repository demo tag v1.0: build failed (exit status 1): RuntimeError: no version"),)),)))
    assert "RuntimeError: no version" in page


MIRROR = MirrorStatus(bytes_used=3 * 1024**3, files=7, max_size=10 * 1024**3, min_free=1024**3,
                      free_disk=50 * 1024**3, offline=False, hits=12, misses=7, bytes_from_upstream=5000,
                      stale_pages_served=2,
                      last_upstream_error="http://up/simple/<script>x</script>/ answered 500",
                      last_upstream_error_at="2027-01-15T08:00:00Z", scanned_at="2027-01-15T08:00:05Z")


def test_status_page_shows_the_mirror_escaped() -> None:
    page = status_page.render_html(StatusReport(generated="now", mirror=MIRROR))
    assert "<h1>Mirror</h1>" in page
    for row in ("<th>used</th><td>3.0 GiB of 10.0 GiB</td>", "<th>files</th><td>7</td>",
                "<th>free disk</th><td>50.0 GiB (below 1.0 GiB files pass through unstored)</td>",
                "<th>hits</th><td>12</td>", "<th>misses</th><td>7</td>",
                "<th>from upstream</th><td>4.9 KiB</td>", "<th>stale pages served</th><td>2</td>",
                "<th>offline</th><td>no</td>"):
        assert row in page
    assert "<script>" not in page
    assert ('<td class="problem">2027-01-15T08:00:00Z: http://up/simple/&lt;script&gt;x&lt;/script&gt;/ '
            "answered 500</td>") in page
    assert "Disk scanned 2027-01-15T08:00:05Z." in page


def test_status_page_without_the_mirror_has_no_mirror_section() -> None:
    report = StatusReport(generated="now")
    assert "Mirror" not in status_page.render_html(report)
    assert "mirror" not in json.loads(status_page.as_json(report, None))
    shown = json.loads(status_page.as_json(StatusReport(generated="now", mirror=MIRROR), None))["mirror"]
    assert (shown["hits"], shown["max_size"], shown["offline"]) == (12, 10 * 1024**3, False)
