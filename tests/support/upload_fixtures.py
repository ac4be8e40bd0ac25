"""Helpers for the upload tests: the real app on a loopback waitress server, and raw multipart bodies.

Bad bodies are built by hand here on purpose: twine never sends them, an attacker might.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from waitress import wasyncore
from waitress.server import create_server

from pypi_insiders import config, directories
from pypi_insiders.config import Config
from pypi_insiders.index.generate import Generator
from pypi_insiders.index.store_watcher import Watcher
from pypi_insiders.web import app, passwords
from tests.conftest import ConfigMaker
from tests.support.server_fixtures import service_env

BOUNDARY = "----insiders-test-boundary-7f3a"
Field = tuple[str, str]
SECRET = "twine-secret-123"  # alice's upload token in the tests that add her


def upload_config(make_config: ConfigMaker, secret: str) -> Config:
    """Uploads on, 1 MB at most, the directories made, and alice an upload user with `secret`."""
    loaded = config.load(str(make_config(upload={"enabled": True, "max_size_mb": 1})))
    directories.prepare(loaded, create=True)
    loaded.upload.users_file.write_text(f"alice:{passwords.hash_secret(secret)}\n")
    return loaded


@dataclass(frozen=True)
class Reply:
    status: int
    text: str
    headers: dict[str, str]


@contextmanager
def indexing(config: Config) -> Iterator[Generator]:
    """The store watched and the index generated as the service does it, in this process."""
    generator = Generator.from_config(config)
    watcher = Watcher(config, generator)
    try:
        generator.generate_all()
        watcher.start()
        yield generator
    finally:
        watcher.stop()
        generator.close()


@contextmanager
def running_app(config: Config) -> Iterator[int]:
    """The index app as `serve` builds it, with the watcher that publishes uploads, on a loopback
    port; stopped and joined on exit.

    waitress hands a request to the app only once the whole body is in, so only its own limit
    can refuse an oversized body early; it is set as the service sets it.
    """
    server: Any = create_server(app.make_app(config), host="127.0.0.1", port=0, threads=4,
                                clear_untrusted_proxy_headers=True, asyncore_loop_timeout=0.05,
                                max_request_body_size=config.upload.max_size + 1024 * 1024)
    thread = threading.Thread(target=server.run, name="upload-test-server", daemon=True)
    thread.start()
    try:
        with indexing(config):
            yield int(server.effective_port)
    finally:
        # An empty map ends the loop after its current poll; the sockets are closed once it has
        # returned, so no thread closes a descriptor another one is polling.
        dispatchers = dict(server._map)
        server._map.clear()
        thread.join(10)
        assert not thread.is_alive(), "test server did not stop"
        server.task_dispatcher.shutdown(timeout=5)
        wasyncore.close_all(dispatchers)


def digests(data: bytes) -> list[Field]:
    return [("md5_digest", hashlib.md5(data, usedforsecurity=False).hexdigest()),
            ("sha256_digest", hashlib.sha256(data).hexdigest()),
            ("blake2_256_digest", hashlib.blake2b(data, digest_size=32).hexdigest())]


def twine_fields(filename: str, data: bytes, name: str, version: str) -> list[Field]:
    """The form twine sends for one file (the fields the server looks at, and a few it ignores)."""
    filetype = "bdist_wheel" if filename.endswith(".whl") else "sdist"
    return [(":action", "file_upload"), ("protocol_version", "1"), ("metadata_version", "2.1"),
            ("name", name), ("version", version), ("filetype", filetype),
            ("pyversion", "py3" if filetype == "bdist_wheel" else "source"),
            ("summary", "a test distribution"), *digests(data)]


def multipart(fields: Sequence[Field], file: tuple[str, bytes] | None, *,
              file_field: str = "content", boundary: str = BOUNDARY) -> bytes:
    out = bytearray()
    for name, value in fields:
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                f"{value}\r\n").encode()
    if file is not None:
        filename, data = file
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
                f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n').encode()
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out)


def post(port: int, body: bytes, *, auth: str | None, path: str = "/legacy/",
         content_type: str = f"multipart/form-data; boundary={BOUNDARY}",
         headers: dict[str, str] | None = None) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        all_headers = {"Content-Type": content_type, "Content-Length": str(len(body)), **(headers or {})}
        if auth is not None:
            all_headers["Authorization"] = auth
        conn.request("POST", path, body=body, headers=all_headers)
        response = conn.getresponse()
        return Reply(response.status, response.read().decode().strip(),
                     {k.lower(): v for k, v in response.getheaders()})
    finally:
        conn.close()


def post_headers_only(port: int, content_length: int, *, auth: str | None = None) -> int:
    """The status of an upload POST that announces `content_length` bytes and sends none of them:
    a server that waits for the body instead of refusing from the header alone times this out."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("POST", "/legacy/")
        if auth is not None:
            conn.putheader("Authorization", auth)
        conn.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
        conn.putheader("Content-Length", str(content_length))
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


def tree(root: Path) -> list[str]:
    """Every file below root, hidden ones included: what 'nothing written' is checked against."""
    found = []
    for directory, _dirs, files in os.walk(root):
        found += [os.path.relpath(os.path.join(directory, f), root) for f in files]  # noqa: PTH118
    return sorted(found)


def with_alice(path: Path) -> Path:
    """The config at `path` with user alice (upload `*`, token SECRET) added by the real CLI."""
    added = subprocess.run([sys.executable, "-m", "pypi_insiders", "--config", str(path), "users", "add",
                            "alice", "--upload", "*"], input=SECRET + "\n", capture_output=True, text=True,
                           timeout=60, check=False, env=service_env())
    assert added.returncode == 0, added.stderr
    return path
