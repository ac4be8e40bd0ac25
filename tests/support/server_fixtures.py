"""Real loopback servers for the index tests: our app in a waitress thread, a fake upstream index,
the `pypi-insiders serve` subprocess, and plain HTTP helpers that never follow redirects.
"""

from __future__ import annotations

import base64
import hashlib
import html
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from waitress.server import create_server

from pypi_insiders.config import Config
from pypi_insiders.fetch import status as fetch_status
from pypi_insiders.service import status_refresh
from pypi_insiders.status_report import Snapshot

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent  # the venv running the tests, wherever it is
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def request(base: str, path: str, method: str = "GET", headers: dict[str, str] | None = None, *,
            body: bytes | None = None, timeout: float = 10.0) -> Reply:
    """One request with the path sent byte for byte (no normalization, no redirects)."""
    host, _, port = base.removeprefix("http://").rstrip("/").rpartition(":")
    conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        conn.close()


def basic(name: str, secret: str) -> str:
    """An `Authorization` value, as every client builds it."""
    return "Basic " + base64.b64encode(f"{name}:{secret}".encode()).decode()


class ThreadedServer:
    """waitress on 127.0.0.1 port 0 in a thread, whose loop this class runs so that `stop` needs
    no cross-thread trigger: task threads finish first, then the loop ends and closes everything.
    """

    def __init__(self, app: WsgiApp, threads: int = 4, *, server: Any = None) -> None:
        """`server`: one made already (as the service makes it), on 127.0.0.1 port 0."""
        self.app = app
        self.server: Any = server or cast(Any, create_server(app, host="127.0.0.1", port=0, threads=threads,
                                                             clear_untrusted_proxy_headers=False))
        self.url = f"http://127.0.0.1:{self.server.effective_port}/"
        self._stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        from waitress import wasyncore  # noqa: PLC0415

        server_map = self.server._map
        while not self._stopping.is_set():
            wasyncore.loop(timeout=0.05, map=server_map, count=1)
        wasyncore.close_all(server_map)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if not self.thread.is_alive():
            return
        self.server.task_dispatcher.shutdown(timeout=5)
        self._stopping.set()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()
        close = getattr(self.app, "close", None)  # our app's pooled upstream connections
        if callable(close):
            close()


# --------------------------------------------------------------------------- a fake upstream

HOLD_BOUND = 10.0  # a held answer is released by the test, or after this long at the latest


@dataclass
class FakeUpstream:
    """A PEP 503/691 index served from memory, counting what it was asked for."""

    projects: dict[str, dict[str, bytes]] = field(default_factory=dict)  # name -> filename -> bytes
    requests: list[str] = field(default_factory=list)
    hold: threading.Event | None = None  # while set and not yet released, answers wait for it
    authorization: str | None = None  # the Authorization header required, when set
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path: str = environ["PATH_INFO"]
        with self.lock:
            self.requests.append(path)
        if self.hold is not None:
            self.hold.wait(HOLD_BOUND)
        if self.authorization is not None and environ.get("HTTP_AUTHORIZATION") != self.authorization:
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="upstream"'),
                                                ("Content-Type", "text/plain"), ("Content-Length", "0")])
            return [b""]
        parts = path.strip("/").split("/")
        status, content_type, body = "404 Not Found", "text/plain", b"no such project\n"
        if len(parts) == 2 and parts[0] == "simple" and parts[1] in self.projects:
            content_type, body = self.page(parts[1], as_json=_wants_json(environ.get("HTTP_ACCEPT", "")))
            status = "200 OK"
        elif len(parts) == 3 and parts[0] == "files" and parts[1] in self.projects:
            data = self.projects[parts[1]].get(parts[2])
            if data is not None:
                status, content_type, body = "200 OK", "application/octet-stream", data
        start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]

    def page(self, name: str, *, as_json: bool) -> tuple[str, bytes]:
        """Relative file URLs on purpose: a proxy must make them absolute."""
        files = sorted(self.projects[name].items())
        if as_json:
            entries = [{"filename": f, "url": f"../../files/{name}/{f}", "requires-python": ">=3",
                        "hashes": {"sha256": hashlib.sha256(d).hexdigest()}, "yanked": False}
                       for f, d in files]
            return JSON_TYPE, json.dumps({"meta": {"api-version": "1.1"}, "name": name,
                                          "files": entries}).encode()
        links = "".join(
            f'<a href="../../files/{name}/{f}#sha256={hashlib.sha256(d).hexdigest()}" '
            f'data-requires-python="{html.escape(">=3")}">{f}</a>\n' for f, d in files)
        return "text/html", f"<!DOCTYPE html><html><body>{links}</body></html>".encode()

    def count(self, prefix: str) -> int:
        with self.lock:
            return sum(1 for r in self.requests if r.startswith(prefix))


def _wants_json(accept: str) -> bool:
    """The fake's own, deliberately simple reading of Accept (not the app's Negotiator, whose
    bugs it would otherwise mirror): JSON when a JSON type has the highest q-value."""
    best = {"json": -1.0, "html": -1.0}
    for item in accept.split(","):
        media, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        kind = "json" if media.strip().endswith("+json") else "html"
        best[kind] = max(best[kind], q)
    return best["json"] > best["html"]


# --------------------------------------------------------------------------- the real service


def service_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "PYPI_INSIDERS"))}
    env.update({"PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "", "UV_NO_CONFIG": "1",
                "PIP_DISABLE_PIP_VERSION_CHECK": "1", "NO_PROXY": "*", "no_proxy": "*"})
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(proxy, None)
    env.update(extra or {})
    return env


@dataclass
class Running:
    process: subprocess.Popen[str]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _listen_url(log: Path, process: subprocess.Popen[str], deadline: float) -> str:
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        for line in text.splitlines():
            if " at http://" in line and "serving" in line:
                return line.split(" at ", 1)[1].split(";", 1)[0].strip()
        if process.poll() is not None:
            msg = f"serve exited with {process.returncode}:\n{text}"
            raise AssertionError(msg)
        time.sleep(0.05)
    msg = f"serve did not start in time:\n{log.read_text(errors='replace')}"
    raise AssertionError(msg)


@contextmanager
def serve_process(config_file: Path | None, *args: str, timeout: float = 30.0,
                  env: dict[str, str] | None = None, workdir: Path | None = None,
                  options: Sequence[str] = ()) -> Iterator[Running]:
    """`pypi-insiders serve` as a subprocess, until it answers; stopped by PID afterwards.

    Without `config_file`, serve finds its config (or none) as a user's would, in `workdir`.
    `options` go before the command (`-q`, `-v`), `args` after it.
    """
    workdir = workdir or (config_file.parent if config_file else Path.cwd())
    log = workdir / f"serve-{time.monotonic_ns()}.log"
    config_args = ["--config", str(config_file)] if config_file else []
    with log.open("w") as out:
        process = subprocess.Popen(
            [*pypi_insiders(), *config_args, *options, "serve", *args],
            stdout=out, stderr=subprocess.STDOUT, text=True, env=service_env(env), cwd=workdir)
    try:
        url = _listen_url(log, process, time.monotonic() + timeout)
        deadline = time.monotonic() + timeout
        while request(url, "/simple/").status != 200:
            assert time.monotonic() < deadline, "serve never answered /simple/ with 200"
            time.sleep(0.05)
        yield Running(process, url, log)
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen[str], timeout: float = 15.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
            raise
    return process.returncode


def status_snapshot(loaded: Config) -> Snapshot:
    """What the service's parent does for `/status`: compute the report and write its snapshot."""
    fetch_status.refresh(loaded)
    return Snapshot.in_cache(loaded.paths.cache)


@contextmanager
def refreshing(loaded: Config, poll: float = 0.05, max_age: float = 15.0) -> Iterator[Snapshot]:
    """The service parent's status thread (`status_refresh.keep_fresh`), polling fast, until the end."""
    stopped = threading.Event()
    worker = threading.Thread(target=status_refresh.keep_fresh, args=(lambda: loaded, stopped),
                              kwargs={"poll": poll, "max_age": max_age}, daemon=True)
    worker.start()
    try:
        yield Snapshot.in_cache(loaded.paths.cache)
    finally:
        stopped.set()
        worker.join(timeout=10)
        assert not worker.is_alive()


def wait_for(check: Callable[[], bool], timeout: float = 10.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()


def client_program(tool: str) -> str:
    """A client tool from its own venv of .ci/deps (kept apart from the Debian runtime), else on PATH;
    a tool in neither place makes the test fail when it runs."""
    script = ROOT / f".venv-{tool}" / "bin" / tool
    return str(script) if script.exists() else shutil.which(tool) or tool


def twine_program() -> str:
    return client_program("twine")


def python() -> str:
    return str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable


def pypi_insiders() -> list[str]:
    """The venv's script; `python -m pypi_insiders` where there is no venv (the .deb build)."""
    script = VENV_BIN / "pypi-insiders"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pypi_insiders"]


# --------------------------------------------------------------------------- hand-made index trees


def write_index(index: Path, projects: dict[str, list[str]]) -> None:
    """Pages shaped like the generator's (the on-disk contract), for tests of the app alone.

    `projects` maps a normalized name to store-relative paths of its files.
    """
    (index / "simple").mkdir(parents=True, exist_ok=True)
    (index / "index.html").write_text(f"<html><body>{len(projects)} projects</body></html>")
    (index / "simple" / "index.html").write_text(
        "".join(f'<a href="{n}/">{n}</a>\n' for n in sorted(projects)))
    (index / "simple" / "index.json").write_text(json.dumps(
        {"meta": {"api-version": "1.1"}, "projects": [{"name": n} for n in sorted(projects)]}))
    for name, files in projects.items():
        page = index / "simple" / name
        page.mkdir(exist_ok=True)
        (page / "index.html").write_text(
            "".join(f'<a href="../../packages/{f}">{f.rsplit("/", 1)[-1]}</a>\n' for f in files))
        (page / "index.json").write_text(json.dumps({"meta": {"api-version": "1.1"}, "name": name, "files": [
            {"filename": f.rsplit("/", 1)[-1], "url": f"../../packages/{f}", "hashes": {}} for f in files]}))
