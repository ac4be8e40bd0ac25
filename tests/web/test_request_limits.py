"""Request strings that become file-system paths, at and past the file system's limits, over real HTTP.

A name longer than one path component may be (255 bytes), a symlink loop left in the store, a
request target of megabytes: each is a 4xx with a one-line reason, never a 500, and the server
logs no traceback for it.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pypi_insiders import config
from pypi_insiders.config import Config
from pypi_insiders.index import generate
from pypi_insiders.service.server import create_server
from pypi_insiders.web.app import make_app
from pypi_insiders.web.upload_checks import MAX_FILENAME_BYTES
from tests.conftest import ConfigMaker
from tests.support import upload_fixtures
from tests.support.distfiles import make_wheel
from tests.support.server_fixtures import FakeUpstream, ThreadedServer, basic, request, write_index
from tests.support.upload_fixtures import multipart, post, running_app, tree, twine_fields

LONG = "a" * 300  # past NAME_MAX
WHEEL_TAIL = "-1.0-py3-none-any.whl"


@pytest.fixture(autouse=True)
def _no_traceback_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every test here: nothing logged with an exception attached (waitress logs a 500's so)."""
    caplog.set_level(logging.WARNING)
    yield
    records = [r for r in caplog.get_records("call") if r.exc_info or "Traceback" in r.getMessage()]
    assert not records, [r.getMessage()[:200] for r in records]


@pytest.fixture
def upstream() -> Iterator[tuple[FakeUpstream, ThreadedServer]]:
    fake = FakeUpstream(projects={"remote-only": {"remote_only-1.0-py3-none-any.whl": b"wheel"}})
    with ThreadedServer(fake.app) as server:
        yield fake, server


def _serve(make_config: ConfigMaker, data_dir: Path, upstream_url: str, fallback: str) -> ThreadedServer:
    (data_dir / "store" / "demo").mkdir(parents=True)
    write_index(data_dir / "index", {"demo": []})
    (data_dir / "index" / "packages" / "demo").mkdir(parents=True)
    loaded = config.load(str(make_config(upstream={"url": upstream_url, "fallback": fallback})))
    return ThreadedServer(make_app(loaded))


@pytest.mark.parametrize("fallback", ["off", "redirect", "proxy"])
@pytest.mark.parametrize("path", [
    f"/simple/{LONG}/", f"/simple/{LONG}", f"/simple/{LONG.upper()}/", f"/simple/{LONG}/{LONG}",
    f"/simple/{'a-' * 200}a/",
])
def test_limits_project_name_longer_than_a_file_name_is_404(
        make_config: ConfigMaker, data_dir: Path, upstream: tuple[FakeUpstream, ThreadedServer],
        fallback: str, path: str) -> None:
    with _serve(make_config, data_dir, upstream[1].url + "simple/", fallback) as server:
        reply = request(server.url, path)
    assert reply.status == 404, reply
    assert reply.body.endswith(b"\n")
    assert len(reply.body) < 100
    assert upstream[0].requests == []  # such a name is nobody's: not worth asking upstream


def test_limits_longest_file_name_still_reaches_upstream(
        make_config: ConfigMaker, data_dir: Path, upstream: tuple[FakeUpstream, ThreadedServer]) -> None:
    name = "b" * 255
    with _serve(make_config, data_dir, upstream[1].url + "simple/", "proxy") as server:
        reply = request(server.url, f"/simple/{name}/")
    assert reply.status == 404
    assert upstream[0].requests == [f"/simple/{name}/"]


@pytest.mark.parametrize("path", [
    f"/packages/demo/{LONG}{WHEEL_TAIL}",
    f"/packages/demo/{LONG}{WHEEL_TAIL}.metadata",
    f"/packages/{LONG}/demo{WHEEL_TAIL}",
    f"/packages/demo/{'d' * 240}{WHEEL_TAIL}.metadata",
    "/packages/loop/demo-1.0-py3-none-any.whl",
    "/packages/loop/demo-1.0-py3-none-any.whl.metadata",
    "/packages/demo/demo-1.0-py3-none-any.whl/demo-1.0-py3-none-any.whl",
])
def test_limits_package_file_paths_the_file_system_refuses_are_404(
        make_config: ConfigMaker, data_dir: Path, path: str) -> None:
    server = _serve(make_config, data_dir, "http://127.0.0.1:9/simple/", "off")
    (data_dir / "store" / "loop").symlink_to("loop")  # a loop an administrator left behind
    (data_dir / "index" / "packages" / "loop").symlink_to("loop")
    make_wheel(data_dir / "store" / "demo", "demo", "1.0")
    with server:
        reply = request(server.url, path)
    assert reply.status == 404, reply
    assert reply.body == b"no such file\n"


def test_limits_page_below_a_symlink_loop_is_404(make_config: ConfigMaker, data_dir: Path) -> None:
    server = _serve(make_config, data_dir, "http://127.0.0.1:9/simple/", "off")
    (data_dir / "index" / "simple" / "looped").symlink_to("looped")
    with server:
        reply = request(server.url, "/simple/looped/")
    assert reply.status == 404


@pytest.mark.parametrize("path", [f"/simple/{'x' * 9000}/", f"/simple/?{'q' * 9000}",
                                  f"/packages/{'p/' * 5000}x.whl"])
@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
def test_limits_overlong_request_target_is_414(make_config: ConfigMaker, data_dir: Path, path: str,
                                               method: str) -> None:
    with _serve(make_config, data_dir, "http://127.0.0.1:9/simple/", "off") as server:
        reply = request(server.url, path, method)
        assert request(server.url, "/simple/demo/").status == 200  # and the server carries on
    assert reply.status == 414


@pytest.fixture
def upload_config(make_config: ConfigMaker) -> Config:
    return upload_fixtures.upload_config(make_config, "pw")


def _upload_named(port: int, directory: Path, name: str) -> tuple[int, str]:
    wheel = make_wheel(directory, name, "1.0")
    data = wheel.read_bytes()
    body = multipart(twine_fields(wheel.name, data, name, "1.0"), (wheel.name, data))
    reply = post(port, body, auth="Basic YWxpY2U6cHc=")  # alice:pw
    return reply.status, reply.text


def test_limits_upload_of_a_filename_too_long_to_serve_is_400_and_writes_nothing(
        upload_config: Config, tmp_path: Path) -> None:
    name = "c" * (MAX_FILENAME_BYTES - len(WHEEL_TAIL) + 1)
    with running_app(upload_config) as port:
        status, text = _upload_named(port, tmp_path / "dist", name)
    assert status == 400
    assert f"longer than {MAX_FILENAME_BYTES} bytes" in text
    assert tree(upload_config.paths.store) == []


def test_limits_upload_of_the_longest_filename_is_stored_and_served(
        upload_config: Config, tmp_path: Path) -> None:
    name = "c" * (MAX_FILENAME_BYTES - len(WHEEL_TAIL))
    with running_app(upload_config) as port:
        status, text = _upload_named(port, tmp_path / "dist", name)
        assert (status, text) == (200, f"{name}{WHEEL_TAIL}: uploaded")
        assert tree(upload_config.paths.store) == [f"{name}/{name}{WHEEL_TAIL}"]
        generator = generate.Generator.from_config(upload_config)
        try:
            generator.generate_all()
        finally:
            generator.close()
        base = f"http://127.0.0.1:{port}"
        assert request(base, f"/simple/{name}/").status == 200
        metadata = request(base, f"/packages/{name}/{name}{WHEEL_TAIL}.metadata")
    assert metadata.status == 200
    assert metadata.body.startswith(b"Metadata-Version")


# --------------------------------------------------------------------------- request bodies

BIG = 60_000_000


def _raw(port: int, head: str, body: bytes = b"") -> tuple[bytes, float]:
    """Send a request's head (and `body`), then read until the server closes: (answer, seconds)."""
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode() + body)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:  # closed with the rest of the body unread: after the answer
            assert answer
        return answer, time.monotonic() - began


@pytest.fixture
def service_server(make_config: ConfigMaker, data_dir: Path) -> Iterator[ThreadedServer]:
    """The app on the server the service makes (its limits), uploads enabled."""
    write_index(data_dir / "index", {})
    loaded = config.load(str(make_config(upload={"enabled": True})))
    app = make_app(loaded)
    with ThreadedServer(app, server=create_server(app, loaded)) as running:
        yield running


@pytest.mark.parametrize(("method", "path", "auth"), [
    ("GET", "/simple/", False), ("POST", "/simple/", False), ("POST", "/", False),
    ("POST", "/legacy/", False), ("POST", "/-/yank", True), ("GET", "/", True), ("PUT", "/", True),
])
@pytest.mark.parametrize("expect", ["", "Expect: 100-continue\r\n"])  # curl's way for large bodies
def test_limits_a_large_body_outside_an_authenticated_upload_is_refused_unread(
        service_server: ThreadedServer, method: str, path: str, auth: bool, expect: str) -> None:
    port = int(service_server.url.rsplit(":", 1)[1].strip("/"))
    credentials = "Authorization: Basic dXNlcjpzZWNyZXQ=\r\n" if auth else ""
    head = (f"{method} {path} HTTP/1.1\r\nHost: x\r\n{credentials}Content-Length: {BIG}\r\n"
            f"Content-Type: application/octet-stream\r\n{expect}\r\n")
    answer, seconds = _raw(port, head)  # the body is never sent: the answer must not wait for it
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"accepted only with an authenticated upload" in answer
    assert seconds < 5
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # and it is not read
        sock.sendall(head.encode())
        with pytest.raises(OSError):  # noqa: PT011 - a reset or a broken pipe, either proves it
            sock.sendall(bytes(BIG))


def test_limits_an_upload_over_the_cap_is_refused_unread_even_with_expect(
        service_server: ThreadedServer) -> None:
    """waitress's own cap, for a caller with (any) credentials: no "100 Continue", no reading."""
    port = int(service_server.url.rsplit(":", 1)[1].strip("/"))
    head = ("POST /legacy/ HTTP/1.1\r\nHost: x\r\nAuthorization: Basic dXNlcjpzZWNyZXQ=\r\n"
            "Content-Length: 300000000\r\nExpect: 100-continue\r\n\r\n")
    answer, seconds = _raw(port, head)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert seconds < 5


def test_limits_a_large_chunked_body_is_cut_off(service_server: ThreadedServer) -> None:
    port = int(service_server.url.rsplit(":", 1)[1].strip("/"))
    chunk = b"%x\r\n%s\r\n" % (100_000, bytes(100_000))
    head = "GET /simple/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer, _seconds = _raw(port, head, chunk)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]


def test_limits_small_bodies_and_authenticated_uploads_reach_the_app(service_server: ThreadedServer) -> None:
    port = int(service_server.url.rsplit(":", 1)[1].strip("/"))
    small = post(port, bytes(1000), auth=None, path="/simple/", content_type="text/plain")
    assert small.status == 405
    large = post(port, bytes(200_000), auth=basic("nobody", "secret-1"), path="/legacy/")
    assert large.status == 403  # the app read it and judged the credentials
