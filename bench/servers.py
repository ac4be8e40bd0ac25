"""The four servers under test, each a subprocess on a free loopback port, stopped by PID.

- ours: `pypi-insiders serve --config <generated config>` on the corpus store;
- ceiling: `bench.ceiling`, a bare waitress app serving our generated pages from a dict;
- nginx: our own nginx master (`daemon off`) on our generated index directory and the store;
- pypiserver: from the package registry, in a throwaway venv under /tmp, on waitress.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
THREADS = 8  # waitress threads for ours and the ceiling alike (our config default)


@dataclass(frozen=True)
class Server:
    name: str
    url: str  # base URL without a trailing slash
    process: subprocess.Popen[bytes]
    started: float  # time.monotonic() just before the process was started
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Signal by PID, wait, then kill: no server outlives the benchmark."""
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


@contextmanager
def running(name: str, argv: Sequence[str], port: int, log: Path, *, env: dict[str, str] | None = None,
            sig: int = signal.SIGTERM) -> Iterator[Server]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        started = time.monotonic()
        process = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, cwd=log.parent)
    try:
        yield Server(name, f"http://127.0.0.1:{port}", process, started, log)
    finally:
        stop(process, sig)


# --------------------------------------------------------------------------- ours


def write_config(state: Path, store: Path, port: int, processes: int | None = None, *,
                 access_log: bool = True) -> Path:
    """A config whose every path is below `state` except the (shared, read-only) corpus store.

    `processes` None leaves `[server] processes` out: the shipped default (one per core, capped).
    """
    state.mkdir(parents=True, exist_ok=True)
    path = state / "config.toml"
    processes_line = "" if processes is None else f"processes = {processes}\n"
    path.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\nthreads = {THREADS}\n{processes_line}'
        f'access_log = {"true" if access_log else "false"}\n'
        f'[paths]\ndata = "{state}"\nstore = "{store}"\nindex = "{state / "index"}"\n'
        f'cache = "{state / "cache"}"\n'
        '[upstream]\nurl = "http://127.0.0.1:9/simple/"\nfallback = "off"\n'
        f'[upload]\nusers_file = "{state / "users"}"\n'
        f'[fetch]\nrepos_dir = "{state / "repos.d"}"\ncredentials_dir = "{state / "credentials"}"\n'
    )
    return path


def _cli() -> list[str]:
    return [str(VENV_PYTHON), "-m", "pypi_insiders"]


def generate(config: Path, timeout: float) -> None:
    """Our index generated once without serving, for runs that measure only the others."""
    subprocess.run([*_cli(), "--config", str(config), "generate"], check=True, timeout=timeout,
                   cwd=REPO, capture_output=True)


@contextmanager
def ours(state: Path, store: Path, processes: int | None = None, name: str = "ours", *,
         access_log: bool = True) -> Iterator[Server]:
    port = free_port()
    config = write_config(state, store, port, processes, access_log=access_log)
    with running(name, [*_cli(), "--config", str(config), "serve"], port, state / "serve.log") as server:
        yield server


# --------------------------------------------------------------------------- ceiling


@contextmanager
def ceiling(index: Path, store: Path, log: Path) -> Iterator[Server]:
    port = free_port()
    argv = [str(VENV_PYTHON), "-m", "bench.ceiling", str(index), str(store), str(port), str(THREADS)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with running("ceiling", argv, port, log, env=env) as server:
        yield server


# --------------------------------------------------------------------------- nginx


def nginx_config(prefix: Path, index: Path, store: Path, port: int) -> Path:
    """`/simple/` from our index directory, `/packages/` from the store, metadata from the index."""
    user = f"user {pwd.getpwuid(os.getuid()).pw_name};\n" if os.geteuid() == 0 else ""
    temp = "".join(f"    {kind}_temp_path {prefix / kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    path = prefix / "nginx.conf"
    path.write_text(
        f"{user}worker_processes auto;\ndaemon off;\npid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'} warn;\nevents {{ worker_connections 1024; }}\n"
        "http {\n    include /etc/nginx/mime.types;\n    access_log off;\n    sendfile on;\n"
        f"    tcp_nopush on;\n    keepalive_requests 1000000;\n{temp}"
        # gzip_static: .gz files beside the pages (our generator writes none today); otherwise
        # compressed on the fly, as ours does once per page version (same level and threshold)
        "    gzip on;\n    gzip_static on;\n    gzip_comp_level 6;\n    gzip_min_length 1024;\n"
        "    gzip_vary on;\n    gzip_types application/vnd.pypi.simple.v1+json application/json;\n"
        f"    server {{\n        listen 127.0.0.1:{port};\n"
        f"        location /simple/ {{ root {index}; index index.html; }}\n"
        f"        location ~ ^/packages/(.+\\.metadata)$ {{ alias {index}/packages/$1; }}\n"
        f"        location /packages/ {{ alias {store}/; }}\n"
        "    }\n}\n"
    )
    return path


@contextmanager
def nginx(prefix: Path, index: Path, store: Path) -> Iterator[Server]:
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = nginx_config(prefix, index, store, port)
    argv = ["nginx", "-p", str(prefix), "-c", str(config), "-e", str(prefix / "error.log")]
    with running("nginx", argv, port, prefix / "stdout.log", sig=signal.SIGQUIT) as server:
        yield server


# --------------------------------------------------------------------------- pypiserver


def ensure_pypiserver(venv: Path) -> Path:
    """pypiserver with its cache extra and waitress, installed once into a venv under /tmp."""
    command = venv / "bin" / "pypi-server"
    if command.exists() and list(venv.glob("lib/python*/site-packages/watchdog-2.2.1.dist-info")):
        return command
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    # watchdog as Debian bookworm ships it: from 2.3 on inotify reports files being opened, and
    # pypiserver 2.4's cache then deadlocks (its digest lock against the observer's lock)
    # as soon as two requests hash files at once.
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "pypiserver[cache]", "waitress",
                    "watchdog==2.2.1"], check=True, timeout=900)
    return command


@contextmanager
def pypiserver(venv: Path, store: Path, log: Path) -> Iterator[Server]:
    port = free_port()
    # pypiserver 2.x has no "waitress" choice; "auto" picks waitress first when it is installed.
    argv = [str(ensure_pypiserver(venv)), "run", "-i", "127.0.0.1", "-p", str(port), "--server", "auto",
            "--disable-fallback", "-a", ".", "-P", ".", str(store)]
    with running("pypiserver", argv, port, log) as server:
        yield server
