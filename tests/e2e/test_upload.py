"""End to end: users made with `pypi-insiders users`, real twine uploads to `pypi-insiders serve`,
the watcher publishing them, and pip installing what was uploaded from the same server.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pypi_insiders import config
from tests.conftest import ConfigMaker
from tests.support.distfiles import make_sdist, make_wheel
from tests.support.server_fixtures import (
    Running,
    python,
    request,
    serve_process,
    service_env,
    twine_program,
    wait_for,
)
from tests.support.upload_fixtures import (
    BOUNDARY,
    SECRET,
    multipart,
    post,
    post_headers_only,
    tree,
    twine_fields,
    with_alice,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def config_file(make_config: ConfigMaker) -> Path:
    return with_alice(make_config(upload={"enabled": True}))


@pytest.fixture
def server(config_file: Path) -> Iterator[Running]:
    with serve_process(config_file) as running:
        yield running


def twine(url: str, user: str, secret: str, *files: Path,
          verbose: bool = True) -> subprocess.CompletedProcess[str]:
    env = service_env({"TWINE_NON_INTERACTIVE": "1", "COLUMNS": "300",  # secrets kept out of argv
                       "TWINE_USERNAME": user, "TWINE_PASSWORD": secret,
                       "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"})
    return subprocess.run([twine_program(), "upload", "--disable-progress-bar", *(["--verbose"] * verbose),
                           "--repository-url", url, *map(str, files)],
                          capture_output=True, text=True, timeout=120, check=False, env=env)


def listed(url: str, project: str) -> set[str]:
    reply = request(url, f"/simple/{project}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    if reply.status != 200:
        return set()
    return {f["filename"] for f in json.loads(reply.body)["files"]}


def test_upload_twine_then_pip_installs_from_the_same_server(server: Running, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "dist", "Twine-Demo", "1.0")
    sdist = make_sdist(tmp_path / "dist", "Twine-Demo", "1.0")
    uploaded = twine(server.url, "alice", SECRET, wheel, sdist)
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    assert listed(server.url, "twine-demo") == {wheel.name, sdist.name}, server.output()  # no waiting
    assert "upload accepted from 127.0.0.1, user alice" in server.output()

    target = tmp_path / "target"
    pip = subprocess.run([python(), "-m", "pip", "install", "--no-cache-dir", "--no-deps", "--only-binary",
                          ":all:", "--target", str(target), "--index-url", f"{server.url}simple/",
                          "twine-demo==1.0"], capture_output=True, text=True, timeout=120, check=False,
                         env=service_env())
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert (target / "twine_demo" / "__init__.py").read_text() == "VERSION = '1.0'\n"
    sdist_reply = request(server.url, f"/packages/twine-demo/{sdist.name}")
    assert sdist_reply.body == sdist.read_bytes()

    again = twine(server.url, "alice", SECRET, wheel)  # identical re-upload: accepted, nothing changes
    assert again.returncode == 0, again.stdout + again.stderr


def test_upload_twine_is_refused_with_a_wrong_secret_or_changed_bytes(server: Running, config_file: Path,
                                                                      tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "dist", "Twine-Demo", "1.0")
    wrong = twine(server.url, "alice", "not-the-secret", wheel, verbose=False)
    assert wrong.returncode != 0
    # Without --verbose twine shows the status and, below it, only the reason phrase.
    shown = " ".join((wrong.stdout + wrong.stderr).split())
    assert f"403 Forbidden from {server.url} invalid credentials for user 'alice'" in shown, shown
    assert twine(server.url, "alice", SECRET, wheel).returncode == 0
    changed = make_wheel(tmp_path / "changed", "Twine-Demo", "1.0", requires=["attrs"])
    refused = twine(server.url, "alice", SECRET, changed, verbose=False)
    assert refused.returncode != 0
    shown = " ".join((refused.stdout + refused.stderr).split())
    assert f"409 Conflict from {server.url} {wheel.name}: already exists with different content" in shown
    store = config.load(str(config_file)).paths.store / "twine-demo" / wheel.name
    assert store.read_bytes() == wheel.read_bytes()


def test_upload_twine_with_an_api_token(server: Running, config_file: Path, tmp_path: Path) -> None:
    made = subprocess.run([sys.executable, "-m", "pypi_insiders", "--config", str(config_file), "users",
                           "add", "ci-bot", "--token", "--upload", "token-demo"], capture_output=True,
                          text=True, timeout=60, check=False, env=service_env())
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    wheel = make_wheel(tmp_path / "dist", "Token-Demo", "0.1")
    uploaded = twine(server.url, "__token__", token, wheel)
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    assert token not in server.output()
    assert wait_for(lambda: listed(server.url, "token-demo") == {wheel.name}, timeout=30), server.output()


def _bad_requests(tmp_path: Path) -> list[tuple[str, bytes, str | None, int]]:
    """(what, body, Authorization, expected status) for the refusals, as a raw client sends them."""
    wheel = make_wheel(tmp_path / "bad", "Raw-Demo", "1.0")
    data = wheel.read_bytes()
    fields = twine_fields(wheel.name, data, "Raw-Demo", "1.0")
    good = multipart(fields, (wheel.name, data))
    auth = "Basic " + base64.b64encode(f"alice:{SECRET}".encode()).decode()
    wrong = "Basic " + base64.b64encode(b"alice:wrong-secret").decode()
    half = data[: len(data) // 2]
    return [
        ("no credentials", good, None, 401),
        ("wrong secret", good, wrong, 403),
        ("path in filename", multipart(fields, ("../" + wheel.name, data)), auth, 400),
        ("not a distribution", multipart(fields, ("raw_demo-1.0.exe", data)), auth, 400),
        ("other project", multipart([(k, "other" if k == "name" else v) for k, v in fields],
                                    (wheel.name, data)), auth, 400),
        ("digest mismatch", multipart(fields, (wheel.name, data[:-1] + bytes([data[-1] ^ 0xFF]))), auth, 400),
        ("truncated archive", multipart(twine_fields(wheel.name, half, "Raw-Demo", "1.0"),
                                        (wheel.name, half)), auth, 400),
        ("malformed body", good[: len(good) // 2], auth, 400),
    ]


def test_upload_refusals_through_serve_leave_the_store_untouched(server: Running, config_file: Path,
                                                                 tmp_path: Path) -> None:
    store = config.load(str(config_file)).paths.store
    port = int(server.url.rstrip("/").rsplit(":", 1)[1])
    for what, body, auth, status in _bad_requests(tmp_path):
        reply = post(port, body, auth=auth)
        assert reply.status == status, f"{what}: {reply.status} {reply.text}"
        assert tree(store) == [], what
    # only headers: the service refuses from Content-Length alone, without waiting for a body
    assert post_headers_only(port, 500 * 1024 * 1024) == 413
    assert tree(store) == []


def test_upload_body_cut_short_by_the_client_leaves_nothing(server: Running, config_file: Path,
                                                            tmp_path: Path) -> None:
    """Half the declared bytes, then the client stops sending: no answer is owed, no file is made."""
    wheel = make_wheel(tmp_path / "cut", "Cut-Demo", "1.0")
    data = wheel.read_bytes()
    body = multipart(twine_fields(wheel.name, data, "Cut-Demo", "1.0"), (wheel.name, data))
    auth = base64.b64encode(f"alice:{SECRET}".encode()).decode()
    port = int(server.url.rstrip("/").rsplit(":", 1)[1])
    head = (f"POST /legacy/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode() + body[: len(body) // 2])
        sock.shutdown(socket.SHUT_WR)
        answer = sock.recv(65536)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer[:80]
    assert tree(config.load(str(config_file)).paths.store) == []
    assert "upload accepted" not in server.output()


def test_upload_uv_publish_is_accepted_twice(server: Running, tmp_path: Path) -> None:
    """uv's publisher speaks the same legacy API; its retry of an identical file is fine."""
    wheel = make_wheel(tmp_path / "dist", "Uv-Demo", "1.0")
    for _ in range(2):
        published = subprocess.run([str(Path(python()).parent / "uv"), "publish", "--publish-url",
                                    f"{server.url}legacy/", str(wheel)],
                                   capture_output=True, text=True, timeout=120, check=False,
                                   env=service_env({"UV_NO_CONFIG": "1", "UV_PUBLISH_USERNAME": "alice",
                                                    "UV_PUBLISH_PASSWORD": SECRET}))
        assert published.returncode == 0, published.stdout + published.stderr
    assert wait_for(lambda: listed(server.url, "uv-demo") == {wheel.name}, timeout=30), server.output()


@pytest.mark.parametrize("trusted", [True, False])
def test_upload_login_throttle_counts_the_forwarded_client_behind_a_trusted_proxy(
        make_config: ConfigMaker, trusted: bool) -> None:
    """Behind nginx every request comes from 127.0.0.1: only a trusted proxy's header tells
    clients apart, and nobody else's header is believed. Two processes count together: the
    kernel hands the eleven connections to either, and the limit is still ten."""
    server = {"processes": 2, **({"trusted_proxy": "127.0.0.1"} if trusted else {})}
    path = make_config(upload={"enabled": True}, server=server)
    wrong = "Basic " + base64.b64encode(b"alice:wrong").decode()
    with serve_process(path) as running:
        port = int(running.url.rsplit(":", 1)[1].strip("/"))
        statuses = [post(port, b"", auth=wrong, headers={"X-Forwarded-For": "203.0.113.5"}).status
                    for _ in range(11)]
        assert statuses[:10] == [403] * 10
        assert statuses[10] == 429
        other = post(port, b"", auth=wrong, headers={"X-Forwarded-For": "203.0.113.6"})
        assert other.status == (403 if trusted else 429)
        if not trusted:
            assert "too many failed logins for an unknown user from 127.0.0.1" in other.text
