"""devpi-server and proxpi as peers of the mirror benchmark, from the package registry into a
throwaway venv under the work directory, each pointed at the stand-in upstream.

- proxpi: its Flask app on Flask's threaded server (`flask run`; its README suggests gunicorn),
  `PROXPI_INDEX_URL` the stand-in, `PROXPI_CACHE_DIR` its own directory.
- devpi-server: `devpi-init --no-root-pypi`, then a `root/pypi` mirror index created over its
  HTTP API with `mirror_url` the stand-in; clients use `/root/pypi/+simple/`.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.servers import Server, free_port, running

# A throwaway devpi on loopback, deleted with the work directory; devpi-init takes it only in
# its argv, so it is made fresh for each run and never used anywhere else.
_PASSWORD = secrets.token_hex(16)


def ensure_peers(venv: Path) -> Path:
    if not (venv / "bin" / "devpi-server").exists() or not (venv / "bin" / "flask").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "proxpi", "devpi-server"],
                       check=True, timeout=900)
    return venv


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    return {**env, "NO_PROXY": "*", **extra}


@contextmanager
def proxpi(venv: Path, state: Path, upstream: str) -> Iterator[Server]:
    state.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [str(venv / "bin" / "flask"), "--app", "proxpi.server", "run", "--host", "127.0.0.1",
            "--port", str(port), "--with-threads"]
    env = _env({"PROXPI_INDEX_URL": upstream + "/simple/", "PROXPI_CACHE_DIR": str(state / "cache"),
                "PROXPI_LOGGING_LEVEL": "WARNING"})
    with running("proxpi", argv, port, state / "proxpi.log", env=env) as server:
        yield Server(server.name, server.url + "/index", server.process, server.started, server.log)


@contextmanager
def devpi(venv: Path, state: Path, upstream: str) -> Iterator[Server]:
    state.mkdir(parents=True, exist_ok=True)
    serverdir = state / "devpi"
    subprocess.run([str(venv / "bin" / "devpi-init"), "--serverdir", str(serverdir), "--no-root-pypi",
                    "--root-passwd", _PASSWORD], check=True, timeout=120, capture_output=True, env=_env({}))
    port = free_port()
    argv = [str(venv / "bin" / "devpi-server"), "--serverdir", str(serverdir), "--host", "127.0.0.1",
            "--port", str(port)]
    with running("devpi", argv, port, state / "devpi.log", env=_env({})) as server:
        _wait_devpi(server.url)
        _mirror_index(server.url, upstream + "/simple/")
        yield Server(server.name, server.url + "/root/pypi/+simple", server.process, server.started,
                     server.log)


def _wait_devpi(url: str) -> None:
    import time  # noqa: PLC0415

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/+api", timeout=5):  # noqa: S310 - loopback
                return
        except OSError:
            time.sleep(0.2)
    msg = f"devpi-server at {url} did not answer"
    raise RuntimeError(msg)


def _call(method: str, url: str, data: dict[str, object], auth: str | None = None) -> dict[str, object]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if auth:
        headers["X-Devpi-Auth"] = auth
    request = urllib.request.Request(url, json.dumps(data).encode(), headers, method=method)  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
        answer: dict[str, object] = json.load(response)
        return answer


def _mirror_index(url: str, mirror_url: str) -> None:
    login = _call("POST", url + "/+login", {"user": "root", "password": _PASSWORD})
    token = str(login["result"]["password"])  # type: ignore[index]
    auth = base64.b64encode(f"root:{token}".encode()).decode()
    _call("PUT", url + "/root/pypi", {"type": "mirror", "mirror_url": mirror_url}, auth)
