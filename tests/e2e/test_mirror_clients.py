"""Real pip and uv through the mirror, with a client that can reach only the index: its
HTTP(S)_PROXY is a dead loopback port and only the index's address is exempt, while the
stand-in upstream listens on another loopback address (127.0.0.2). Cold, warm, with upstream
stopped, cooldowns read from our upload-time, and a hash-pinned install after prefetch, offline.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from waitress.server import create_server

from tests.conftest import ConfigMaker
from tests.support.client_fixtures import client_env, installed, run
from tests.support.distfiles import make_wheel
from tests.support.mirror_upstream import Upstream
from tests.support.server_fixtures import (
    VENV_BIN,
    ThreadedServer,
    pypi_insiders,
    python,
    serve_process,
    service_env,
)

pytestmark = pytest.mark.slow

DAY = 86400.0
UPSTREAM_HOST = "127.0.0.2"  # another loopback address: the client's proxy settings do not exempt it


@dataclass
class World:
    fake: Upstream
    server: ThreadedServer
    url: str  # upstream's simple index


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: connecting to it is refused


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    fake = Upstream()
    now = time.time()
    for name, version, requires, age in (("alpha", "1.0", ["beta"], 30), ("beta", "1.0", [], 30),
                                          ("beta", "2.0", [], 1)):
        wheel = make_wheel(tmp_path / "wheels", name, version, requires=requires)
        fake.add(name, wheel.name, wheel.read_bytes(), uploaded=now - age * DAY)
    server = cast(Any, create_server(fake.app, host=UPSTREAM_HOST, port=0, threads=4,
                                     clear_untrusted_proxy_headers=False))
    with ThreadedServer(fake.app, server=server) as running:
        yield World(fake, running, f"http://{UPSTREAM_HOST}:{server.effective_port}/simple/")


def isolated(home: Path) -> dict[str, str]:
    """The client may reach the index (127.0.0.1) and nothing else."""
    dead = f"http://127.0.0.1:{_dead_port()}/"
    return client_env(home, {"HTTP_PROXY": dead, "HTTPS_PROXY": dead, "http_proxy": dead, "https_proxy": dead,
                             "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"})


def pip_install(index: str, target: Path, home: Path, *args: str,
                ok: bool = True) -> subprocess.CompletedProcess[str]:
    return run([python(), "-m", "pip", "install", "--no-cache-dir", "--isolated", "--index-url", index,
                "--target", str(target), *args], home, isolated(home), ok=ok)


def uv_install(index: str, home: Path, *args: str) -> Path:
    venv = home / "venv"
    env = isolated(home)
    run([str(VENV_BIN / "uv"), "venv", "--no-config", "--python", str(VENV_BIN / "python"), str(venv)],
        home, env)
    run([str(VENV_BIN / "uv"), "pip", "install", "--no-config", "--python", str(venv / "bin" / "python"),
         "--index-url", index, *args], home, env)
    return venv


def mirror_config(make_config: ConfigMaker, world: World, **keys: object) -> Path:
    return make_config(server={"listen": "127.0.0.1:0", "processes": 2},
                       upstream={"url": world.url, "fallback": "mirror", "min_free": 0, "timeout": 3, **keys})


def test_mirror_clients_pip_and_uv_cold_warm_and_after_upstream_stops(
        make_config: ConfigMaker, world: World, tmp_path: Path) -> None:
    config_file = mirror_config(make_config, world, cache_ttl=0)
    with serve_process(config_file) as served:
        index = served.url + "simple/"
        # Proof that the client cannot reach upstream by itself.
        direct = pip_install(world.url, tmp_path / "t0", tmp_path / "h0", "alpha", ok=False)
        assert direct.returncode != 0
        pip_install(index, tmp_path / "t1", tmp_path / "h1", "alpha")  # cold
        assert installed(tmp_path / "t1") == {"alpha-1.0.dist-info", "beta-2.0.dist-info"}
        fetched = world.fake.count("/files/")
        assert fetched == 2
        venv = uv_install(index, tmp_path / "h2", "alpha")  # warm, another client
        assert installed(venv) == {"alpha-1.0.dist-info", "beta-2.0.dist-info"}
        assert world.fake.count("/files/") == fetched
        world.server.stop()  # upstream is gone: stale pages, files from disk
        pip_install(index, tmp_path / "t3", tmp_path / "h3", "alpha")
        assert installed(tmp_path / "t3") == {"alpha-1.0.dist-info", "beta-2.0.dist-info"}
    # and after a restart, with upstream still down
    with serve_process(config_file) as served:
        venv = uv_install(served.url + "simple/", tmp_path / "h4", "alpha")
        assert installed(venv) == {"alpha-1.0.dist-info", "beta-2.0.dist-info"}


@pytest.mark.network  # pip>=26.1 comes from the host's package source
def test_mirror_clients_cooldowns_read_our_upload_time(
        make_config: ConfigMaker, world: World, tmp_path: Path) -> None:
    with serve_process(mirror_config(make_config, world)) as served:
        index = served.url + "simple/"
        venv = uv_install(index, tmp_path / "h1", "--exclude-newer", "3 days", "alpha")
        assert installed(venv) == {"alpha-1.0.dist-info", "beta-1.0.dist-info"}
        pip26 = newer_pip(tmp_path)
        run([python(), str(pip26 / "pip"), "install", "--no-cache-dir", "--isolated", "--index-url", index,
             "--uploaded-prior-to", "P3D", "--target", str(tmp_path / "t2"), "alpha"],
            tmp_path, isolated(tmp_path / "h2"))
        assert installed(tmp_path / "t2") == {"alpha-1.0.dist-info", "beta-1.0.dist-info"}
    # The server's own cooldown: the same answer for a client without one.
    with serve_process(mirror_config(make_config, world, cooldown="3 days")) as served:
        pip_install(served.url + "simple/", tmp_path / "t3", tmp_path / "h3", "alpha")
        assert installed(tmp_path / "t3") == {"alpha-1.0.dist-info", "beta-1.0.dist-info"}


def newer_pip(tmp_path: Path) -> Path:
    """A pip with `--uploaded-prior-to` (26.1+), as a wheel pip runs from, fetched through the
    host's own pip configuration (its local package source)."""
    target = tmp_path / "newer-pip"
    done = subprocess.run([python(), "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                           "pip>=26.1", "-d", str(target)], capture_output=True, text=True, timeout=120,
                          check=False)
    wheels = sorted(target.glob("pip-*.whl"))
    assert wheels, f"no pip>=26.1 from the host's package source: {done.stderr}"
    return wheels[-1]


def test_mirror_clients_require_hashes_after_prefetch_offline(
        make_config: ConfigMaker, world: World, tmp_path: Path) -> None:
    config_file = mirror_config(make_config, world)
    pinned = tmp_path / "requirements.txt"
    lines = []
    for name, version in (("alpha", "1.0"), ("beta", "2.0")):
        [data] = [data for filename, (data, _when) in world.fake.projects[name].items()
                  if f"-{version}-" in filename]
        lines.append(f"{name}=={version} --hash=sha256:{hashlib.sha256(data).hexdigest()}")
    pinned.write_text("\n".join(lines) + "\n")
    done = subprocess.run([*pypi_insiders(), "--config", str(config_file), "mirror", "prefetch",
                           "-r", str(pinned)], capture_output=True, text=True, timeout=120, check=False,
                          env=service_env())
    assert done.returncode == 0, done.stdout + done.stderr
    world.server.stop()
    offline = mirror_config(make_config, world, offline=True)
    with serve_process(offline) as served:
        pip_install(served.url + "simple/", tmp_path / "t1", tmp_path / "h1", "--require-hashes",
                    "-r", str(pinned))
        assert installed(tmp_path / "t1") == {"alpha-1.0.dist-info", "beta-2.0.dist-info"}
        page = json.loads(run(["curl", "-s", "-H", "Accept: application/vnd.pypi.simple.v1+json",
                               served.url + "simple/beta/"], tmp_path, service_env()).stdout)
        assert [f["filename"] for f in page["files"]] == ["beta-2.0-py3-none-any.whl"]
