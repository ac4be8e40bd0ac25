"""The mirror behind the sample nginx site: a miss streams through the service, a hit is sent
by nginx from the new internal location `/-/mirror/`, which no client can ask for directly."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

from pypi_insiders import config
from pypi_insiders.service.server import create_server
from pypi_insiders.web.app import make_app
from tests.conftest import ConfigMaker
from tests.support.mirror_upstream import Upstream
from tests.support.nginx_fixtures import running_nginx
from tests.support.server_fixtures import ThreadedServer, request, status_snapshot, write_index


def test_mirror_behind_nginx_streams_a_miss_and_sends_a_hit_itself(
        make_config: ConfigMaker, data_dir: Path, tmp_path: Path) -> None:
    fake = Upstream()
    data = hashlib.sha256(b"n").digest() * 20_000
    sha = fake.add("far", "far-1.0-py3-none-any.whl", data)
    write_index(data_dir / "index", {})
    with ThreadedServer(fake.app) as upstream:
        loaded = config.load(str(make_config(upstream={"url": upstream.url + "simple/", "fallback": "mirror",
                                                       "min_free": 0})))
        loaded = replace(loaded, server=replace(loaded.server, trusted_proxy="127.0.0.1"))
        app = make_app(loaded, status=status_snapshot(loaded))
        with ThreadedServer(app, server=create_server(app, loaded)) as service, \
                running_nginx(tmp_path / "nginx", service.url, data_dir / "store", data_dir / "index",
                              tmp_path / "cache") as nginx:
            path = f"/mirror/far/{sha}/far-1.0-py3-none-any.whl"
            page = request(nginx.url, "/simple/far/")
            assert page.status == 200
            assert f"../../mirror/far/{sha}/" in page.body.decode()
            miss = request(nginx.url, path)
            assert (miss.status, miss.body) == (200, data), nginx.error_log()
            hit = request(nginx.url, path)
            assert (hit.status, hit.body) == (200, data), nginx.error_log()
            assert hit.header("X-Accel-Redirect") is None  # nginx consumed it
            assert request(service.url, path, headers={"X-Sendfile-Type": "X-Accel-Redirect"}).header(
                "X-Accel-Redirect") == f"/-/mirror/{sha[:2]}/{sha}/far-1.0-py3-none-any.whl"
            direct = request(nginx.url, f"/-/mirror/{sha[:2]}/{sha}/far-1.0-py3-none-any.whl")
            assert direct.status == 404
            assert fake.count("/files/") == 1
