"""The mirror's limits on one upstream file, against a stand-in upstream on loopback:
`max_file_size` (refused before any byte when the size is known, cut when it is not) and
`file_timeout` (a trickling upstream is stopped, its followers end short, nothing is kept).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pypi_insiders import config
from pypi_insiders.web.app import IndexApp, make_app
from tests.conftest import ConfigMaker
from tests.support.mirror_fixtures import Start, mirror_servers, short_read, stand_in_upstream, stored_files
from tests.support.mirror_upstream import Upstream
from tests.support.server_fixtures import ThreadedServer, request, write_index

WHEEL = "far-1.0-py3-none-any.whl"


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, str]]:
    with stand_in_upstream() as served:
        yield served


@pytest.fixture
def start(make_config: ConfigMaker, data_dir: Path, upstream: tuple[Upstream, str]) -> Iterator[Start]:
    with mirror_servers(make_config, data_dir, upstream) as run:
        yield run


def ours(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == level and r.name.startswith("pypi_insiders")]


def nothing_kept(app: IndexApp) -> bool:
    assert app.mirror is not None
    return stored_files(app) == [] and list(app.mirror.layout.tmp.iterdir()) == []


def test_mirror_max_file_size_refuses_what_the_page_says_is_larger_before_asking_upstream(
        start: Start, upstream: tuple[Upstream, str], caplog: pytest.LogCaptureFixture) -> None:
    fake, _ = upstream
    big = fake.add("far", WHEEL, b"b" * 200_000)
    small = fake.add("far", "far-0.9-py3-none-any.whl", b"s" * 50_000)
    url, app = start(max_file_size="100 KiB")
    path = f"/mirror/far/{big}/{WHEEL}"
    answer = request(url, path)
    assert answer.status == 502
    assert b"200000 bytes, more than upstream.max_file_size (102400 bytes)" in answer.body
    assert request(url, path, method="HEAD").status == 502  # not the page's size, as for a miss
    assert fake.count("/files/") == 0
    assert nothing_kept(app)
    refused = ours(caplog, logging.WARNING)  # one line per refused request: the GET and the HEAD
    assert [(r.__dict__["RESULT"], r.__dict__["SHA256"]) for r in refused] == [("toolarge", big)] * 2
    assert request(url, f"/mirror/far/{small}/far-0.9-py3-none-any.whl").body == b"s" * 50_000


def test_mirror_max_file_size_zero_is_no_limit(start: Start, upstream: tuple[Upstream, str]) -> None:
    sha = upstream[0].add("far", WHEEL, b"b" * 200_000)
    url, _app = start(max_file_size=0)
    assert request(url, f"/mirror/far/{sha}/{WHEEL}").body == b"b" * 200_000


def test_mirror_max_file_size_refuses_a_larger_content_length_before_any_byte(
        start: Start, upstream: tuple[Upstream, str], caplog: pytest.LogCaptureFixture) -> None:
    fake, _ = upstream
    sha = fake.add("far", WHEEL, b"b" * 200_000)
    fake.faults[WHEEL] = "unsized"  # the page gives no size; the file's Content-Length does
    url, app = start(max_file_size=100_000)
    answer = request(url, f"/mirror/far/{sha}/{WHEEL}")
    assert answer.status == 502
    assert b"max_file_size" in answer.body
    assert fake.count("/files/") == 1
    assert nothing_kept(app)
    assert [r.__dict__["RESULT"] for r in ours(caplog, logging.WARNING)] == ["toolarge"]


def test_mirror_max_file_size_cuts_a_body_without_any_size_when_it_grows_past(
        start: Start, upstream: tuple[Upstream, str], caplog: pytest.LogCaptureFixture) -> None:
    """No size anywhere (chunked): the file is downloaded before it is served, so the client
    gets a 502, not a short body; the download stops at the limit, not at the end."""
    fake, _ = upstream
    fake.sizes = False
    sha = fake.add("far", WHEEL, b"b" * 2_000_000)
    url, app = start(max_file_size=300_000)
    answer = request(url, f"/mirror/far/{sha}/{WHEEL}")
    assert answer.status == 502
    assert nothing_kept(app)
    [error] = ours(caplog, logging.ERROR)
    assert (error.__dict__["RESULT"], error.__dict__["SHA256"]) == ("toolarge", sha)
    assert "more than upstream.max_file_size (300000 bytes)" in error.getMessage()


def test_mirror_file_timeout_stops_a_trickling_upstream_and_its_followers(
        start: Start, upstream: tuple[Upstream, str], caplog: pytest.LogCaptureFixture) -> None:
    """1 KiB every 0.2 s never lets the 3 s idle timeout fire; the 1.5 s deadline does, for
    the leader and then every follower (their own 3 s stall timer would come later)."""
    caplog.set_level(logging.INFO)
    fake, _ = upstream
    data = b"t" * 300_000  # a minute of trickle
    sha = fake.add("far", WHEEL, data)
    fake.faults[WHEEL] = "trickle"
    url, app = start(timeout=3.0, file_timeout=1.5)
    request(url, "/simple/far/")
    path = f"/mirror/far/{sha}/{WHEEL}"
    results: list[tuple[int, int, int]] = []
    began = time.monotonic()
    threads = [threading.Thread(target=lambda: results.append(short_read(url, path))) for _ in range(3)]
    for thread in threads:
        thread.start()
        time.sleep(0.1)  # the first one leads
    for thread in threads:
        thread.join(30)
    took = time.monotonic() - began
    assert len(results) == 3
    assert all(status == 200 and length == len(data) and got < len(data)
               for status, length, got in results), results
    assert 1.4 < took < 2.9, took
    assert fake.count("/files/") == 1
    assert nothing_kept(app)
    [error] = ours(caplog, logging.ERROR)
    assert (error.__dict__["RESULT"], error.__dict__["SHA256"]) == ("timeout", sha)
    assert "upstream.file_timeout" in error.getMessage()
    fake.faults.clear()  # upstream recovered: the next request fetches the file again
    assert request(url, path).body == data
    assert len(stored_files(app)) == 1


def test_mirror_limits_apply_on_reload(
        make_config: ConfigMaker, data_dir: Path, upstream: tuple[Upstream, str]) -> None:
    fake, upstream_url = upstream
    data = b"r" * 200_000
    sha = fake.add("far", WHEEL, data)
    write_index(data_dir / "index", {})
    table = {"url": upstream_url + "simple/", "fallback": "mirror", "timeout": 3.0, "min_free": 0}
    app = make_app(config.load(str(make_config(upstream=table))))
    path = f"/mirror/far/{sha}/{WHEEL}"
    with ThreadedServer(app, threads=4) as server:
        app.reconfigure(config.load(str(make_config(upstream={**table, "max_file_size": 1000}))))
        assert request(server.url, path).status == 502
        assert fake.count("/files/") == 0
        app.reconfigure(config.load(str(make_config(upstream={**table, "file_timeout": 0.5}))))
        fake.faults[WHEEL] = "trickle"
        began = time.monotonic()
        status, _length, got = short_read(server.url, path)
        assert (status, got < len(data)) == (200, True)
        assert time.monotonic() - began < 2.5
        fake.release.set()  # ends the trickle upstream is still sending
        assert nothing_kept(app)
