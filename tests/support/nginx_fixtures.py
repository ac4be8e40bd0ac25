"""A real nginx master in front of a test service, configured by the shipped sample site.

The sample `etc/nginx/pypi-insiders.conf` is rendered with the test's port, service address
and directories (each substitution must find its line, so the sample itself is what runs),
wrapped in a minimal main config whose pid, logs and temp files live in the test's directory,
and run in the foreground (`daemon off`) as our own child, stopped by its PID.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[2] / "etc" / "nginx" / "pypi-insiders.conf"
SHIPPED_SERVICE = "server 127.0.0.1:31411;"
SHIPPED_STORE = "alias /var/lib/pypi-insiders/store/;"
SHIPPED_METADATA = "alias /var/lib/pypi-insiders/index/packages/;"
SHIPPED_MIRROR = "alias /var/cache/pypi-insiders/mirror/files/;"


@dataclass(frozen=True)
class Nginx:
    url: str
    pid: int
    prefix: Path

    def error_log(self) -> str:
        return _error_log(self.prefix)


def _error_log(prefix: Path) -> str:
    path = prefix / "error.log"
    return path.read_text(errors="replace") if path.exists() else ""


def nginx_program() -> str:
    """Debian's nginx-light (.ci/deps installs it, never starting its service); missing fails."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if found is None:
        pytest.fail("nginx is not installed: `bash .ci/deps` installs Debian's nginx-light")
    return found


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"the sample site no longer has exactly one {old!r}"
    return text.replace(old, new)


def render_sample(port: int, service_port: int, store: Path, index: Path, cache: Path | None = None) -> str:
    site = SAMPLE.read_text()
    site = _replace_once(site, SHIPPED_MIRROR, f"alias {cache or index / 'no-cache'}/mirror/files/;")
    site = _replace_once(site, "    listen 80;\n    listen [::]:80;\n    server_name",
                         f"    listen 127.0.0.1:{port};\n    server_name")
    site = _replace_once(site, SHIPPED_SERVICE, f"server 127.0.0.1:{service_port};")
    site = _replace_once(site, SHIPPED_STORE, f"alias {store}/;")
    return _replace_once(site, SHIPPED_METADATA, f"alias {index}/packages/;")


def main_config(prefix: Path, site: Path) -> str:
    # As root, workers would become `nobody`, who cannot enter pytest's private tmp directory.
    user = f"user {pwd.getpwuid(os.getuid()).pw_name};\n" if os.geteuid() == 0 else ""
    temp = "".join(f"    {kind}_temp_path {prefix / kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"{user}worker_processes 1;\npid {prefix / 'nginx.pid'};\n"
            f"error_log {prefix / 'error.log'} warn;\nevents {{ worker_connections 64; }}\n"
            f"http {{\n    access_log {prefix / 'access.log'};\n{temp}    include {site};\n}}\n")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_listening(process: subprocess.Popen[bytes], port: int, prefix: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"nginx exited with status {process.returncode}: {_error_log(prefix)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    pytest.fail(f"nginx did not listen on 127.0.0.1:{port} within {timeout} s")


@contextmanager
def running_nginx(prefix: Path, service_url: str, store: Path, index: Path,
                  cache: Path | None = None) -> Iterator[Nginx]:
    """The sample site on a free loopback port in front of `service_url` (http://127.0.0.1:N/)."""
    program = nginx_program()
    prefix.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    service_port = int(service_url.rstrip("/").rpartition(":")[2])
    site = prefix / "site.conf"
    site.write_text(render_sample(port, service_port, store, index, cache))
    conf = prefix / "nginx.conf"
    conf.write_text(main_config(prefix, site))
    argv = [program, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log"), "-g", "daemon off;"]
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, cwd=prefix)
    try:
        _wait_listening(process, port, prefix)
        yield Nginx(f"http://127.0.0.1:{port}/", process.pid, prefix)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGQUIT)  # graceful: the master waits for its worker
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
