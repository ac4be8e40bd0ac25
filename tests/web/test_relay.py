"""The proxy against a misbehaving upstream on a loopback socket: a page cut short, garbage with a
200, a JSON or HTML answer that is no index page. Each is an upstream failure: the stale copy if
there is one, else 502, never cached, and one warning naming the project and what was wrong.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pypi_insiders import config
from pypi_insiders.web.app import make_app
from tests.conftest import ConfigMaker
from tests.support.raw_server import RawServer, reply
from tests.support.server_fixtures import JSON_TYPE, Reply, ThreadedServer, request, wait_for, write_index

GOOD_HTML = (b'<!DOCTYPE html><html><body><a href="../../files/far-1.0.tar.gz#sha256=00">far-1.0.tar.gz</a>'
             b"\n</body></html>\n")
GOOD_JSON = json.dumps({"meta": {"api-version": "1.1"}, "name": "far", "files": [
    {"filename": "far-1.0.tar.gz", "url": "../../files/far-1.0.tar.gz", "hashes": {}}]}).encode()
GARBAGE = bytes(range(256)) * 8

Served = Callable[..., str]


@dataclass
class Script:
    """What upstream answers: the last entry of `answers`, again and again, until a test adds one."""

    answers: list[bytes | None] = field(default_factory=lambda: [reply("200 OK", GOOD_HTML)])
    url: str = ""

    def append(self, answer: bytes | None) -> None:
        self.answers.append(answer)


@pytest.fixture
def scripted() -> Iterator[Script]:
    script = Script()
    with RawServer(lambda _head: script.answers[-1]) as server:
        script.url = server.url
        yield script


@pytest.fixture
def proxy(make_config: ConfigMaker, data_dir: Path, scripted: Script) -> Iterator[Served]:
    upstream_url = scripted.url
    write_index(data_dir / "index", {})
    servers: list[ThreadedServer] = []

    def start(**keys: object) -> str:
        table = {"url": upstream_url + "simple/", "fallback": "proxy", "timeout": 5.0, **keys}
        servers.append(ThreadedServer(make_app(config.load(str(make_config(upstream=table))))).__enter__())
        return servers[-1].url

    yield start
    for server in servers:
        server.stop()


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("pypi_insiders")]


def get(url: str, accept: str = "") -> Reply:
    return request(url, "/simple/far/", headers={"Accept": accept} if accept else {})


BROKEN = [
    pytest.param(reply("200 OK", GOOD_HTML[:60], length=len(GOOD_HTML)), "closed before the end",
                 id="cut-short-of-content-length"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"3c\r\n" + GOOD_HTML[:30], "closed before the end", id="cut-inside-a-chunk"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n" + GOOD_HTML[:70],
                 "short read: the page ends before </html>", id="cut-without-content-length"),
    pytest.param(reply("200 OK", GARBAGE), "not HTML: byte 128 is not utf-8", id="binary-as-html"),
    pytest.param(reply("200 OK", GARBAGE[:128] + b"<a href='x'>x</a>", "text/html; charset=latin-1"),
                 "not HTML: binary data", id="control-characters"),
    pytest.param(reply("200 OK", b"just some words\n"), "no <html>, <body> or <a> element",
                 id="text-as-html"),
    pytest.param(reply("200 OK", GARBAGE, "application/octet-stream"), "not HTML or JSON", id="octet-stream"),
    pytest.param(reply("200 OK", GOOD_HTML, "text/plain"), "not HTML or JSON", id="text-plain"),
    pytest.param(reply("200 OK", GOOD_JSON[:40], JSON_TYPE), "unparseable JSON", id="json-cut"),
    pytest.param(reply("200 OK", b"[1, 2]", JSON_TYPE), "JSON without a meta object", id="json-list"),
    pytest.param(reply("200 OK", b'{"meta": {}, "files": [{"filename": 3}]}', JSON_TYPE),
                 "files[0] has no filename and url", id="json-bad-entry"),
    pytest.param(reply("200 OK", GARBAGE, JSON_TYPE), "unparseable JSON", id="binary-as-json"),
    pytest.param(b"garbage, not HTTP\r\n\r\n", "connection broken", id="not-http"),
    pytest.param(None, "connection broken", id="hang-up"),
]


@pytest.mark.parametrize(("broken", "reason"), BROKEN)
def test_upstream_fault_without_a_copy_is_502_with_one_warning(
        proxy: Served, scripted: Script, caplog: pytest.LogCaptureFixture,
        broken: bytes | None, reason: str) -> None:
    caplog.set_level(logging.WARNING)
    url = proxy()
    scripted.append(broken)
    answer = get(url, JSON_TYPE if b"json" in (broken or b"") else "")
    assert answer.status == 502, answer
    assert answer.body.startswith(b"upstream index failed: http://127.0.0.1:")
    assert reason.encode() in answer.body
    messages = [r.getMessage() for r in warnings_of(caplog)]
    assert len(messages) == 1, messages
    assert messages[0].startswith("upstream failed for far: ")
    assert reason in messages[0]
    assert warnings_of(caplog)[0].__dict__.get("PROJECT") == "far"


@pytest.mark.parametrize(("broken", "reason"), BROKEN[:4] + BROKEN[8:9])
def test_upstream_fault_serves_the_stale_copy_and_keeps_it(
        proxy: Served, scripted: Script, caplog: pytest.LogCaptureFixture,
        broken: bytes, reason: str) -> None:
    caplog.set_level(logging.WARNING)
    accept = JSON_TYPE if b"json" in broken else ""
    if accept:
        scripted.append(reply("200 OK", GOOD_JSON, JSON_TYPE))
    url = proxy(cache_ttl=0.0)
    fresh = get(url, accept)
    assert fresh.status == 200
    scripted.append(broken)
    stale = get(url, accept)
    assert (stale.status, stale.body) == (200, fresh.body)
    messages = [r.getMessage() for r in warnings_of(caplog)]
    assert len(messages) == 1
    assert "far" in messages[0]
    assert reason in messages[0]
    assert messages[0].endswith("; serving the stale copy")


def test_upstream_fault_is_not_cached(proxy: Served, scripted: Script) -> None:
    """Once upstream is whole again, the next attempt (after the short pause that keeps clients
    from queueing behind a failing upstream) relays it."""
    url = proxy()
    scripted.append(reply("200 OK", GARBAGE))
    assert get(url).status == 502
    scripted.append(reply("200 OK", GOOD_HTML))
    assert wait_for(lambda: get(url).status == 200, timeout=20.0, step=0.5)
    assert b"far-1.0.tar.gz" in get(url).body


@pytest.mark.parametrize("page", [
    GOOD_HTML,
    b'<a href="far-1.0.tar.gz">far-1.0.tar.gz</a>\n',  # no <html>: a bare link list is a page too
    b"<!DOCTYPE html><html><head><title>Links for far</title></head><body><h1>Links for far</h1>"
    b"</body></html>",  # a project without files
])
def test_upstream_close_delimited_whole_pages_are_relayed(proxy: Served, scripted: Script,
                                                          page: bytes) -> None:
    url = proxy()
    scripted.append(b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nConnection: close\r\n\r\n"
                    + page)
    answer = get(url)
    assert answer.status == 200
    assert answer.header("Content-Type") == "text/html; charset=utf-8"


def test_upstream_json_page_is_relayed_with_absolute_urls(proxy: Served, scripted: Script) -> None:
    url = proxy()
    scripted.append(reply("200 OK", GOOD_JSON, JSON_TYPE))
    answer = get(url, JSON_TYPE)
    assert answer.status == 200
    relayed = json.loads(answer.body)
    assert relayed["files"][0]["url"].endswith("/files/far-1.0.tar.gz")
    assert relayed["files"][0]["url"].startswith("http://127.0.0.1:")
