"""`/status` as HTML: escaped, whatever the state files and the config hold."""

from __future__ import annotations

from pypi_insiders.status_report import FailedBuild, LastBuild, RepoStatus, StatusReport
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
