"""Byte ranges of a file answer (`web/ranges.py`, applied in `web/finish.py`): the parsing on its
own, then over HTTP on the server as the service makes it, where waitress's file wrapper sends
the bytes, for a local file and a mirrored one alike. nginx answers the same requests the same
way (its `X-Accel-Redirect` hand-over carries the client's Range)."""

from __future__ import annotations

import http.client
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pypi_insiders import config
from pypi_insiders.service.server import create_server
from pypi_insiders.web import ranges
from pypi_insiders.web.app import make_app
from pypi_insiders.web.finish import finish
from pypi_insiders.web.response import FileBody, Response
from tests.conftest import ConfigMaker
from tests.support.distfiles import make_wheel
from tests.support.server_fixtures import ThreadedServer, write_index

ETAG = '"e1"'
SIZE = 100


@pytest.mark.parametrize(("header", "expected"), [
    ("bytes=0-9", (0, 9)),
    ("bytes=10-", (10, 99)),
    ("bytes=-10", (90, 99)),
    ("bytes=-1000", (0, 99)),          # a suffix longer than the file: all of it
    ("bytes=95-1000", (95, 99)),       # past the end: up to the end
    ("bytes=99-99", (99, 99)),
    ("Bytes = 1 - 2", (1, 2)),         # case and blanks as RFC 9110 allows
    ("bytes=0-9,20-29", None),         # several ranges: the whole file
    ("bytes=9-0", None),               # invalid: the whole file
    ("bytes=-", None),
    ("items=0-9", None),
    ("bytes=a-b", None),
    ("bytes=" + "9" * 30 + "-", None),  # absurd digits are not parsed at all
    ("", None),
])
def test_ranges_requested(header: str, expected: tuple[int, int] | None) -> None:
    found = ranges.requested({"HTTP_RANGE": header}, SIZE, ETAG)
    assert (None if found is None else (found.first, found.last)) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=500-600", "bytes=-0"])
def test_ranges_past_the_end_are_unsatisfiable(header: str) -> None:
    with pytest.raises(ranges.Unsatisfiable):
        ranges.requested({"HTTP_RANGE": header}, SIZE, ETAG)


@pytest.mark.parametrize(("if_range", "ranged"), [(ETAG, True), ('"other"', False),
                                                   ("Sat, 01 Jan 2000 00:00:00 GMT", False)])
def test_ranges_if_range_needs_this_files_etag(if_range: str, ranged: bool) -> None:
    found = ranges.requested({"HTTP_RANGE": "bytes=0-0", "HTTP_IF_RANGE": if_range}, SIZE, ETAG)
    assert (found is not None) == ranged


def _file_answer(tmp_path: Path) -> tuple[Response, bytes]:
    data = bytes(range(SIZE))
    path = tmp_path / "f.whl"
    path.write_bytes(data)
    headers = [("Content-Type", "application/octet-stream"), ("Content-Length", str(SIZE)), ("ETag", ETAG)]
    return Response("200 OK", headers, FileBody(str(path), SIZE), etag=ETAG, mtime=1), data


def _sent(environ: dict[str, Any], answer: Response) -> tuple[Response, bytes]:
    sent, body = finish(environ, answer)
    out = b"".join(body)
    getattr(body, "close", lambda: None)()
    return sent, out


def test_finish_sends_one_range_without_a_file_wrapper(tmp_path: Path) -> None:
    answer, data = _file_answer(tmp_path)
    sent, body = _sent({"REQUEST_METHOD": "GET", "HTTP_RANGE": "bytes=10-19"}, answer)
    assert sent.status == "206 Partial Content"
    headers = dict(sent.headers)
    assert headers["Content-Range"] == "bytes 10-19/100"
    assert headers["Content-Length"] == "10"
    assert [k for k, _v in sent.headers].count("Content-Length") == 1
    assert body == data[10:20]


def test_finish_416_names_the_size(tmp_path: Path) -> None:
    answer, _data = _file_answer(tmp_path)
    sent, _body = _sent({"REQUEST_METHOD": "GET", "HTTP_RANGE": "bytes=100-"}, answer)
    assert sent.code == 416
    assert dict(sent.headers)["Content-Range"] == "bytes */100"


def test_finish_head_and_get_of_a_file_say_ranges_are_accepted(tmp_path: Path) -> None:
    answer, data = _file_answer(tmp_path)
    for method in ("HEAD", "GET"):
        sent, body = _sent({"REQUEST_METHOD": method}, answer)
        assert sent.code == 200
        assert dict(sent.headers)["Accept-Ranges"] == "bytes"
        assert body == (data if method == "GET" else b"")


def test_finish_pages_offer_no_ranges() -> None:
    page = Response("200 OK", [("Content-Type", "text/html"), ("Content-Length", "5")], b"hello")
    sent, body = finish({"REQUEST_METHOD": "GET", "HTTP_RANGE": "bytes=0-1"}, page)
    assert sent is page
    assert b"".join(body) == b"hello"


def test_finish_a_conditional_get_still_wins_over_a_range(tmp_path: Path) -> None:
    answer, _data = _file_answer(tmp_path)
    sent, _body = _sent({"REQUEST_METHOD": "GET", "HTTP_RANGE": "bytes=0-1", "HTTP_IF_NONE_MATCH": ETAG},
                        answer)
    assert sent.code == 304


WHEEL = "demo_pkg-1.0-py3-none-any.whl"


@pytest.fixture
def served(make_config: ConfigMaker, data_dir: Path) -> Iterator[tuple[int, bytes]]:
    loaded = config.load(str(make_config()))
    wheel = make_wheel(data_dir / "store" / "demo-pkg", "demo-pkg", "1.0")
    write_index(data_dir / "index", {"demo-pkg": [f"demo-pkg/{WHEEL}"]})
    app = make_app(loaded)
    with ThreadedServer(app, server=create_server(app, loaded)) as server:
        yield int(server.server.effective_port), wheel.read_bytes()


def _exchange(port: int, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", f"/packages/demo-pkg/{WHEEL}", headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_ranges_over_http_through_waitress_file_wrapper(served: tuple[int, bytes]) -> None:
    port, data = served
    status, headers, body = _exchange(port, {"Range": "bytes=-22"})  # a zip's end record, as uv reads it
    assert status == 206
    assert headers["Content-Range"] == f"bytes {len(data) - 22}-{len(data) - 1}/{len(data)}"
    assert body == data[-22:]
    status, headers, body = _exchange(port, {"Range": "bytes=5-"})
    assert (status, body) == (206, data[5:])
    status, headers, body = _exchange(port, {"Range": "bytes=0-3,8-9"})
    assert (status, body, headers["Accept-Ranges"]) == (200, data, "bytes")
    status, headers, _body = _exchange(port, {"Range": f"bytes={len(data)}-"})
    assert (status, headers["Content-Range"]) == (416, f"bytes */{len(data)}")


def test_ranges_a_wheels_metadata_is_readable_by_ranged_reads(served: tuple[int, bytes]) -> None:
    """What uv does when a page offers no PEP 658 file: the central directory, then one member."""
    import zipfile  # noqa: PLC0415 - only this test reads a zip

    port, data = served

    class Ranged(io.RawIOBase):
        def __init__(self) -> None:
            self.position, self.requests = 0, 0

        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return True

        def seek(self, offset: int, whence: int = 0) -> int:
            self.position = {0: offset, 1: self.position + offset, 2: len(data) + offset}[whence]
            return self.position

        def tell(self) -> int:
            return self.position

        def readinto(self, buffer: Any) -> int:
            if self.position >= len(data):
                return 0
            last = min(self.position + len(buffer), len(data)) - 1
            status, _headers, body = _exchange(port, {"Range": f"bytes={self.position}-{last}"})
            assert status == 206
            self.requests += 1
            buffer[:len(body)] = body
            self.position += len(body)
            return len(body)

    reader = Ranged()
    with zipfile.ZipFile(io.BufferedReader(reader, 4096)) as wheel:
        metadata = wheel.read("demo_pkg-1.0.dist-info/METADATA")
    assert b"Name: demo-pkg" in metadata
    assert reader.requests >= 2
