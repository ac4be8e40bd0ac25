"""HEAD over one kept-alive connection, on the server as the service makes it (waitress 2.1 closed
the connection after every HEAD without saying so): the same headers as GET, the real
Content-Length, no body, and the connection still usable afterwards.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from pypi_insiders import config
from pypi_insiders.service.server import create_server
from pypi_insiders.web.app import make_app
from tests.conftest import ConfigMaker
from tests.support.distfiles import make_wheel
from tests.support.server_fixtures import JSON_TYPE, ThreadedServer, write_index

WHEEL = "demo_pkg-1.0-py3-none-any.whl"
PATHS = ["/simple/demo-pkg/", "/simple/", "/", f"/packages/demo-pkg/{WHEEL}", "/simple/Demo_Pkg/",
         "/simple/no-such-project/", "/legacy/", f"/packages/demo-pkg/{WHEEL}.metadata"]


@pytest.fixture
def port(make_config: ConfigMaker, data_dir: Path) -> Iterator[int]:
    loaded = config.load(str(make_config()))
    make_wheel(data_dir / "store" / "demo-pkg", "demo-pkg", "1.0")
    write_index(data_dir / "index", {"demo-pkg": [f"demo-pkg/{WHEEL}"]})
    metadata = data_dir / "index" / "packages" / "demo-pkg" / f"{WHEEL}.metadata"
    metadata.parent.mkdir(parents=True)
    metadata.write_text("Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\n")
    app = make_app(loaded)
    with ThreadedServer(app, server=create_server(app, loaded)) as server:
        yield int(server.server.effective_port)


def exchange(conn: http.client.HTTPConnection, method: str, path: str,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn.request(method, path, headers=headers or {})
    response = conn.getresponse()
    body = response.read()
    return response.status, {k: v for k, v in response.getheaders() if k != "Date"}, body


@pytest.mark.parametrize("accept", ["", JSON_TYPE])
@pytest.mark.parametrize("encoding", ["", "gzip"])
def test_head_keeps_the_connection_and_matches_get(port: int, accept: str, encoding: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {k: v for k, v in (("Accept", accept), ("Accept-Encoding", encoding)) if v}
    try:
        conn.connect()
        first = conn.sock
        for path in PATHS:
            head_status, head_headers, head_body = exchange(conn, "HEAD", path, headers)
            get_status, get_headers, get_body = exchange(conn, "GET", path, headers)
            assert head_status == get_status, path
            assert head_headers == get_headers, path
            assert head_body == b""
            assert head_headers["Content-Length"] == str(len(get_body)), path
            assert "Connection" not in head_headers
        assert conn.sock is first  # one connection throughout: never closed under the client
    finally:
        conn.close()


def test_head_twice_in_a_row_and_pipelined(port: int) -> None:
    """Two HEADs and a GET written at once: all three answered, in order, on one connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"HEAD /simple/demo-pkg/ HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"HEAD /packages/demo-pkg/" + WHEEL.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /simple/demo-pkg/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 3
    assert data.endswith(b"</a>\n")  # the GET's page, after two answers without a body


@pytest.mark.parametrize(("request_line", "extra"), [
    (b"HEAD /simple/demo-pkg/ HTTP/1.1", b"Connection: close\r\n"),
    (b"HEAD /simple/demo-pkg/ HTTP/1.0", b""),
])
def test_head_closes_when_the_client_asks_and_says_so(port: int, request_line: bytes, extra: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request_line + b"\r\nHost: x\r\n" + extra + b"\r\n")
        data = b""
        while chunk := sock.recv(65536):  # ends: the server closes
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"\r\nConnection: close" in head
    assert b"\r\nContent-Length: " in head
    assert body == b""
