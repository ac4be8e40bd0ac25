"""The one HTTP client against real loopback servers: Basic auth from the URL, credentials kept out
of messages and off other origins, pooled connections, gzip, timeouts, short and oversized answers.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import pytest

from pypi_insiders.http_client import Credentials, HttpClient, HttpError, display_url, split_credentials
from tests.support.raw_server import RawServer, reply
from tests.support.server_fixtures import ThreadedServer

SECRET = "s3cr3t-pw"


@dataclass
class Echo:
    """Answers what it saw: the Authorization header, the client's port; /go/?to=URL redirects."""

    seen: list[dict[str, str]] = field(default_factory=list)
    hold: threading.Event | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path: str = environ["PATH_INFO"]
        with self.lock:
            self.seen.append({"path": path, "auth": environ.get("HTTP_AUTHORIZATION", ""),
                              "port": environ["REMOTE_PORT"],
                              "encoding": environ.get("HTTP_ACCEPT_ENCODING", "")})
        if self.hold is not None:
            self.hold.wait(10.0)
        if path == "/go/":
            target = unquote(environ["QUERY_STRING"].removeprefix("to="))
            start_response("302 Found", [("Location", target), ("Content-Length", "0")])
            return [b""]
        if path == "/gzip/":
            body = gzip.compress(b"x" * 100_000)
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Encoding", "gzip"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        if path == "/big/":
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "300000")])
            return [b"b" * 300_000]
        body = environ.get("HTTP_AUTHORIZATION", "none").encode()
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"),
                                  ("Content-Length", str(len(body)))])
        return [body]


@pytest.fixture
def echo() -> Iterator[tuple[Echo, str]]:
    fake = Echo()
    with ThreadedServer(fake.app) as server:
        yield fake, server.url


@pytest.fixture
def client() -> Iterator[HttpClient]:
    with HttpClient() as made:
        yield made


def with_user(url: str, user: str = "alice", password: str = SECRET) -> str:
    return url.replace("http://", f"http://{user}:{password}@", 1)


@pytest.mark.parametrize(("url", "plain", "auth"), [
    ("https://host/simple/", "https://host/simple/", None),
    ("https://u:p@host:8443/simple/", "https://host:8443/simple/", "Basic dTpw"),
    ("https://__token__@[::1]/simple/", "https://[::1]/simple/", "Basic X190b2tlbl9fOg=="),
])
def test_http_client_split_credentials(url: str, plain: str, auth: str | None) -> None:
    found, credentials = split_credentials(url)
    assert found == plain == display_url(url)
    assert (credentials.header() if credentials else None) == auth


@pytest.mark.parametrize(("url", "shown"), [
    ("ssh://git@host:2222/team/proj.git", "ssh://git@host:2222/team/proj.git"),
    ("ssh://git:oops@host/team/proj.git", "ssh://git@host/team/proj.git"),
    ("git+ssh://deploy@[::1]/proj.git", "git+ssh://deploy@[::1]/proj.git"),
    ("https://ghp_token@host/team/proj.git", "https://host/team/proj.git"),
])
def test_http_client_display_url_keeps_only_an_ssh_login(url: str, shown: str) -> None:
    assert display_url(url) == shown


def test_http_client_credentials_hide_the_password_in_repr() -> None:
    assert SECRET not in repr(Credentials("alice", SECRET))


def test_http_client_url_credentials_become_basic_auth(echo: tuple[Echo, str], client: HttpClient) -> None:
    fake, url = echo
    response = client.get(with_user(url) + "simple/", timeout=5)
    assert response.status == 200
    assert response.body == Credentials("alice", SECRET).header().encode()
    assert response.url == url + "simple/"
    assert fake.seen[-1]["path"] == "/simple/"


def test_http_client_explicit_credentials_win(echo: tuple[Echo, str], client: HttpClient) -> None:
    _fake, url = echo
    response = client.get(with_user(url), timeout=5, auth=Credentials("bob", "other"))
    assert response.body == Credentials("bob", "other").header().encode()


def test_http_client_keeps_credentials_on_a_same_origin_redirect(echo: tuple[Echo, str],
                                                                 client: HttpClient) -> None:
    fake, url = echo
    response = client.get(with_user(url) + "go/?to=" + quote(url + "landed/"), timeout=5)
    assert response.url == url + "landed/"
    assert [s["auth"] for s in fake.seen] == [Credentials("alice", SECRET).header()] * 2


def test_http_client_drops_credentials_on_a_redirect_to_another_origin(client: HttpClient) -> None:
    first, second = Echo(), Echo()
    with ThreadedServer(first.app) as one, ThreadedServer(second.app) as two:
        response = client.get(with_user(one.url) + "go/?to=" + quote(two.url + "elsewhere/"), timeout=5)
    assert response.status == 200
    assert response.url == two.url + "elsewhere/"
    assert first.seen[0]["auth"].startswith("Basic ")
    assert second.seen == [{**second.seen[0], "auth": ""}]
    assert response.body == b"none"


def test_http_client_reuses_one_connection(echo: tuple[Echo, str], client: HttpClient) -> None:
    fake, url = echo
    for _ in range(5):
        assert client.get(url, timeout=5).status == 200
    assert len({s["port"] for s in fake.seen}) == 1


def test_http_client_asks_for_gzip_and_decodes_it(echo: tuple[Echo, str], client: HttpClient) -> None:
    fake, url = echo
    response = client.get(url + "gzip/", timeout=5)
    assert response.body == b"x" * 100_000
    assert "gzip" in fake.seen[-1]["encoding"]


def test_http_client_refuses_an_answer_over_the_limit(echo: tuple[Echo, str], client: HttpClient) -> None:
    _fake, url = echo
    with pytest.raises(HttpError, match="larger than 100000 bytes"):
        client.get(url + "big/", timeout=5, max_bytes=100_000)
    assert client.get(url, timeout=5).status == 200  # the half-read connection was not reused


def test_http_client_read_timeout(echo: tuple[Echo, str], client: HttpClient) -> None:
    fake, url = echo
    fake.hold = threading.Event()  # the answer comes only after the client gave up, or never
    try:
        with pytest.raises(HttpError, match="timed out"):
            client.get(url, timeout=0.5)
    finally:
        fake.hold.set()


@pytest.mark.parametrize(("raw", "reason"), [
    (reply("200 OK", b"<html>cut", length=500), "closed before the end of the answer"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n40\r\nabc",
     "closed before the end of the answer"),
    (b"SSH-2.0-OpenSSH\r\n\r\n", "connection broken"),
    (None, "connection broken"),
])
def test_http_client_broken_answers_are_errors(client: HttpClient, raw: bytes | None, reason: str) -> None:
    with RawServer(lambda _head: raw) as server, pytest.raises(HttpError) as caught:
        client.get(with_user(server.url) + "simple/x/", timeout=5)
    assert reason in str(caught.value)
    assert str(caught.value).startswith(server.url + "simple/x/: ")
    assert SECRET not in str(caught.value)
    assert b"Basic " in server.requests[0]


def test_http_client_refused_connection_names_the_url_without_credentials(client: HttpClient) -> None:
    with pytest.raises(HttpError) as caught:
        client.get(f"http://alice:{SECRET}@127.0.0.1:9/simple/", timeout=5)
    assert str(caught.value).startswith("http://127.0.0.1:9/simple/: cannot connect")
    assert SECRET not in str(caught.value)


def test_http_client_post_sends_the_body_and_no_redirect_is_followed(echo: tuple[Echo, str],
                                                                     client: HttpClient) -> None:
    fake, url = echo
    response = client.request("POST", url + "go/?to=" + quote(url + "x/"), body=b"form", timeout=5,
                              auth=Credentials("up", "loader"))
    assert response.status == 302
    assert [s["path"] for s in fake.seen] == ["/go/"]
