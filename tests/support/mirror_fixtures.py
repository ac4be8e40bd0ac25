"""The mirror's test servers: a stand-in upstream with injectable faults (`mirror_upstream`) and
index apps with `fallback = "mirror"` pointed at it, plus what tests read of a transfer and of
the mirror's disk. Shared by the route's tests and the per-file limits' tests."""

from __future__ import annotations

import http.client
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pypi_insiders import config
from pypi_insiders.web.app import IndexApp, make_app
from tests.conftest import ConfigMaker
from tests.support.mirror_upstream import Upstream
from tests.support.server_fixtures import ThreadedServer, status_snapshot, write_index

Start = Callable[..., tuple[str, IndexApp]]


@contextmanager
def stand_in_upstream() -> Iterator[tuple[Upstream, str]]:
    """The fake upstream and its URL, served on loopback."""
    fake = Upstream()
    with ThreadedServer(fake.app, threads=8) as server:
        try:
            yield fake, server.url
        finally:
            fake.release.set()  # before the server stops: it waits for held answers


@contextmanager
def mirror_servers(make_config: ConfigMaker, data_dir: Path,
                   upstream: tuple[Upstream, str]) -> Iterator[Start]:
    """`run(**upstream_keys)` starts an index mirroring `upstream`; all are stopped at the end."""
    write_index(data_dir / "index", {})
    servers: list[ThreadedServer] = []

    def run(**keys: object) -> tuple[str, IndexApp]:
        table = {"url": upstream[1] + "simple/", "fallback": "mirror", "timeout": 3.0, "min_free": 0, **keys}
        loaded = config.load(str(make_config(upstream=table)))
        app = make_app(loaded, status=status_snapshot(loaded))
        servers.append(ThreadedServer(app, threads=8).__enter__())
        return servers[-1].url, app

    try:
        yield run
    finally:
        upstream[0].release.set()
        for server in servers:
            server.stop()


def short_read(url: str, path: str) -> tuple[int, int, int]:
    """(status, announced length, bytes received) of a body that may be cut short."""
    host, _, port = url.removeprefix("http://").rstrip("/").rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        length = int(response.getheader("Content-Length") or -1)
        try:
            got = len(response.read())
        except http.client.IncompleteRead as cut:
            got = len(cut.partial)
        return response.status, length, got
    finally:
        conn.close()


def stored_files(app: IndexApp) -> list[Path]:
    assert app.mirror is not None
    return sorted(p for p in app.mirror.layout.files.rglob("*") if p.is_file())
