"""The mirror benchmark (issue 23): installs through `fallback = "mirror"`, cold and warm,
beside nginx serving the same files statically (the machine's limit) and installs straight
from the stand-in upstream; one file fetched by 16 clients at once; a large file's throughput
and the service's memory while a 1 GB file streams through a cold mirror.

    .venv/bin/python -m bench.mirror_bench [--runs 3] [--warm-runs 10] [--big-mb 1024]
        [--pep658] [--peers] [--workdir DIR]

The wheels (black's and rich's dependency trees) are downloaded once with pip, through the
host's own pip configuration, into the work directory (never the repository). Every server
is a subprocess on a loopback port, stopped by its PID. Under two minutes with the defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from bench import mirror_peers
from bench.servers import REPO, VENV_PYTHON, Server, free_port, running

TREES = ("black", "rich")
DAY = 86400


def _clean_env() -> dict[str, str]:
    """A client's environment: no pip/uv configuration of the host, no proxy."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))
           and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update({"PIP_CONFIG_FILE": os.devnull, "UV_NO_CONFIG": "1", "NO_PROXY": "*",
                "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONPATH": str(REPO)})
    return env


def ensure_wheels(directory: Path, big_mb: int) -> None:
    if not list(directory.glob("black-*.whl")):
        directory.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(VENV_PYTHON), "-m", "pip", "download", "--only-binary", ":all:", "-d",
                        str(directory), *TREES], check=True, timeout=600, capture_output=True)
    for name, size_mb in (("bigfile", 100), ("hugefile", big_mb)):
        path = directory / f"{name}-1.0-py3-none-any.whl"
        if not path.exists() or path.stat().st_size != size_mb * 2**20:
            with path.open("wb") as out:
                block = os.urandom(2**20)
                for _ in range(size_mb):
                    out.write(block)
    old = time.time() - 30 * DAY
    for path in directory.iterdir():
        os.utime(path, (old, old))


@contextmanager
def stand_in(wheels: Path, static: Path, log: Path, *, pep658: bool = False) -> Iterator[Server]:
    port = free_port()
    argv = [str(VENV_PYTHON), "-m", "bench.mirror_upstream", str(wheels), str(port), str(static),
            *(["pep658"] if pep658 else [])]
    with running("stand-in", argv, port, log, env=_clean_env()) as server:
        _wait(server.url + "/-/count")
        yield server


@contextmanager
def nginx_static(prefix: Path, static: Path, wheels: Path) -> Iterator[Server]:
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "".join(f"    {kind}_temp_path {prefix / kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    config = prefix / "nginx.conf"
    config.write_text(
        f"{user}worker_processes auto;\ndaemon off;\npid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'} warn;\nevents {{ worker_connections 1024; }}\n"
        f"http {{\n    access_log off;\n    sendfile on;\n{temp}    gzip on;\n"
        f"    server {{\n        listen 127.0.0.1:{port};\n"
        f"        location /simple/ {{ root {static}; index index.html; }}\n"
        f"        location /files/ {{ alias {wheels}/; types {{ }}\n"
        "            default_type application/octet-stream; }\n"
        "    }\n}\n")
    argv = ["nginx", "-p", str(prefix), "-c", str(config), "-e", str(prefix / "error.log")]
    with running("nginx", argv, port, prefix / "stdout.log", sig=signal.SIGQUIT) as server:
        _wait(server.url + "/simple/black/")
        yield server


@contextmanager
def ours(state: Path, upstream: str, *, processes: int = 2) -> Iterator[Server]:
    state.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = state / "config.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\nprocesses = {processes}\naccess_log = false\n'
        f'[paths]\ndata = "{state}"\ncache = "{state / "cache"}"\n'
        f'[upstream]\nurl = "{upstream}/simple/"\nfallback = "mirror"\nmin_free = 0\nmax_size = 0\n'
        f'[upload]\nusers_file = "{state / "users"}"\n'
        f'[fetch]\nrepos_dir = "{state / "repos.d"}"\ncredentials_dir = "{state / "credentials"}"\n')
    argv = [str(VENV_PYTHON), "-m", "pypi_insiders", "--config", str(config), "serve"]
    with running("ours", argv, port, state / "serve.log", env=_clean_env()) as server:
        _wait(server.url + "/simple/")
        yield server


def _wait(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5):  # noqa: S310 - loopback, ours
                return
        except OSError:
            time.sleep(0.1)
    msg = f"{url} did not answer within {timeout} s"
    raise RuntimeError(msg)


def install(tool: str, index: str, work: Path) -> float:
    target = work / f"target-{time.monotonic_ns()}"
    if tool == "pip":
        argv = [str(VENV_PYTHON), "-m", "pip", "install", "--quiet", "--no-cache-dir", "--isolated",
                "--target", str(target), "--index-url", index, *TREES]
    else:
        argv = [str(VENV_PYTHON.parent / "uv"), "pip", "install", "--quiet", "--no-cache", "--no-config",
                "--python", str(VENV_PYTHON), "--target", str(target), "--index-url", index, *TREES]
    began = time.perf_counter()
    done = subprocess.run(argv, check=False, timeout=300, env=_clean_env(), capture_output=True, text=True)
    spent = time.perf_counter() - began
    if done.returncode != 0:
        msg = f"{tool} install from {index} failed: {done.stderr[-2000:]}"
        raise RuntimeError(msg)
    shutil.rmtree(target, ignore_errors=True)
    return spent


Starter = Callable[[Path, str], AbstractContextManager[Server]]


def _servers(args: argparse.Namespace) -> dict[str, Starter]:
    """Each mirror under test: a function of (state directory, upstream URL) to a running server
    whose `url` is its simple index without the trailing slash."""
    found: dict[str, Starter] = {"ours": ours}
    if args.peers:
        venv = mirror_peers.ensure_peers(args.workdir / "peers-venv")
        found["proxpi"] = lambda state, up: mirror_peers.proxpi(venv, state, up)
        found["devpi"] = lambda state, up: mirror_peers.devpi(venv, state, up)
    return found


def installs(args: argparse.Namespace, upstream: Server, static: Server, work: Path) -> dict[str, Any]:
    """Medians: of `--warm-runs` for nginx, the stand-in and the warm mirrors, which alternate
    between the servers within each run and run before any cold one (a cold server starting
    or stopping beside a warm measurement would load the machine under it); of `--runs` for
    the cold ones. A pip install varies by a few tenths of a second between identical runs."""
    results: dict[str, dict[str, list[float]]] = {}
    servers = _servers(args)
    with contextlib.ExitStack() as stack:
        warm = {name: stack.enter_context(start(work / f"warm-{name}", upstream.url))
                for name, start in servers.items()}
        for server in warm.values():
            install("uv", _index(server), work)  # fills its cache
        for tool in ("uv", "pip"):
            times: dict[str, list[float]] = {"nginx-static": [], "stand-in direct": []}
            for _run in range(args.warm_runs):
                times["nginx-static"].append(install(tool, static.url + "/simple/", work))
                times["stand-in direct"].append(install(tool, upstream.url + "/simple/", work))
                for name in servers:
                    times.setdefault(f"{name} warm", []).append(install(tool, _index(warm[name]), work))
            results[tool] = times
        results["walk"] = walks(args, upstream, static, warm)
    for tool in ("uv", "pip"):
        for run in range(args.runs):
            # the direct install again, beside the cold ones it is the yardstick of
            results[tool].setdefault("stand-in direct, cold phase", []).append(
                install(tool, upstream.url + "/simple/", work))
            for name, start in servers.items():
                state = work / f"cold-{name}-{tool}-{run}"
                with start(state, upstream.url) as cold:
                    results[tool].setdefault(f"{name} cold", []).append(install(tool, _index(cold), work))
                shutil.rmtree(state, ignore_errors=True)
    return {tool: {name: round(statistics.median(spent), 4) for name, spent in times.items()}
            for tool, times in results.items()}


def walks(args: argparse.Namespace, upstream: Server, static: Server,
          warm: dict[str, Server]) -> dict[str, list[float]]:
    """What an installer asks of an index, without the installer: every project page of the
    trees (HTML, as pip and nginx's static tree agree on), then every file on it, one request
    after another. An install's own work is about 90 % of its time and varies by more than the
    servers differ; this is the servers' share alone, alternating, `--warm-runs` times."""
    indexes = {"nginx-static": static.url + "/simple/"} | {f"{n} warm": _index(s) for n, s in warm.items()}
    names = [n for n in _projects(upstream.url + "/simple/") if n not in ("bigfile", "hugefile")]
    spent: dict[str, list[float]] = {name: [] for name in indexes}
    for _run in range(args.warm_runs):
        for name, index in indexes.items():
            spent[name].append(_walk(index, names))
    return spent


def _projects(root: str) -> list[str]:
    with urllib.request.urlopen(root, timeout=30) as response:  # noqa: S310 - loopback, ours
        return re.findall(r'href="([^"/]+)/"', response.read().decode())


def _walk(index: str, names: list[str]) -> float:
    began = time.perf_counter()
    for name in names:
        page = index.rstrip("/") + "/" + name + "/"
        asked = urllib.request.Request(page, headers={"Accept": "text/html"})  # noqa: S310 - loopback
        with urllib.request.urlopen(asked, timeout=30) as response:  # noqa: S310 - loopback, ours
            links = re.findall(r'href="([^"#]+)', response.read().decode())
        for link in links:
            with urllib.request.urlopen(urllib.parse.urljoin(page, link), timeout=60) as response:  # noqa: S310
                while response.read(1 << 20):
                    pass
    return time.perf_counter() - began


def _index(server: Server) -> str:
    return server.url if server.url.endswith(("/index", "/+simple")) else server.url + "/simple/"


def _get(url: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 - loopback, ours
        while chunk := response.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _file_url(server: Server, name: str) -> tuple[str, str]:
    request = urllib.request.Request(server.url + f"/simple/{name}/",  # noqa: S310
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        entry = json.load(response)["files"][0]
    url = urllib.parse.urljoin(server.url + f"/simple/{name}/", entry["url"].split("#")[0])
    return url, str(entry["hashes"]["sha256"])


def concurrent_and_throughput(upstream: Server, static: Server, work: Path) -> dict[str, Any]:
    with ours(work / "big", upstream.url) as mine:
        url, sha = _file_url(mine, "bigfile")
        before = json.load(urllib.request.urlopen(upstream.url + "/-/count"))["files"]  # noqa: S310
        results: list[tuple[str, int]] = []
        threads = [threading.Thread(target=lambda: results.append(_get(url))) for _ in range(16)]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        cold_16 = time.perf_counter() - began
        after = json.load(urllib.request.urlopen(upstream.url + "/-/count"))["files"]  # noqa: S310
        good = sum(1 for digest, _size in results if digest == sha)
        # alternated, so that a burst of load elsewhere on the machine hits both alike
        warm_runs: list[float] = []
        nginx_runs: list[float] = []
        for _ in range(5):
            warm_runs.append(_timed(url))
            nginx_runs.append(_timed(static.url + "/files/bigfile-1.0-py3-none-any.whl"))
    warm, nginx = min(warm_runs), min(nginx_runs)
    return {"clients": 16, "upstream_requests": after - before, "verified_bodies": good,
            "cold_16_clients_s": round(cold_16, 2), "warm_100mb_s": round(warm, 3),
            "nginx_100mb_s": round(nginx, 3), "warm_vs_nginx_throughput": round(nginx / warm, 3),
            "warm_vs_nginx_median": round(statistics.median(nginx_runs) / statistics.median(warm_runs), 3)}


def _timed(url: str) -> float:
    began = time.perf_counter()
    _get(url)
    return time.perf_counter() - began


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def memory_while_streaming(upstream: Server, work: Path, big_mb: int) -> dict[str, Any]:
    with ours(work / "rss", upstream.url, processes=1) as mine:
        url, sha = _file_url(mine, "hugefile")
        base = _rss_kib(mine.pid)
        peak = base
        done = threading.Event()
        found: list[tuple[str, int]] = []

        def fetch() -> None:
            found.append(_get(url))
            done.set()

        threading.Thread(target=fetch).start()
        while not done.wait(0.05):
            peak = max(peak, _rss_kib(mine.pid))
    return {"file_mb": big_mb, "rss_base_mib": round(base / 1024, 1), "rss_peak_mib": round(peak / 1024, 1),
            "rss_growth_mib": round((peak - base) / 1024, 1), "verified": bool(found and found[0][0] == sha)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/pypi-insiders-bench/mirror"))  # noqa: S108
    parser.add_argument("--runs", type=int, default=3, help="cold installs per server and tool")
    parser.add_argument("--warm-runs", type=int, default=10, help="warm installs per server and tool")
    parser.add_argument("--big-mb", type=int, default=1024)
    parser.add_argument("--pep658", action="store_true",
                        help="the stand-in offers each wheel's METADATA as a PEP 658 file (pip 23.0.1 "
                             "rejects some)")
    parser.add_argument("--peers", action="store_true",
                        help="also proxpi and devpi-server (installed once from the package registry)")
    args = parser.parse_args()
    wheels, static, work = args.workdir / "wheels", args.workdir / "static", args.workdir / "run"
    ensure_wheels(wheels, args.big_mb)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    with stand_in(wheels, static, work / "stand-in.log", pep658=args.pep658) as upstream, \
            nginx_static(work / "nginx", static, wheels) as nginx:
        report = {"installs": installs(args, upstream, nginx, work),
                  "big_file": concurrent_and_throughput(upstream, nginx, work),
                  "memory": memory_while_streaming(upstream, work, args.big_mb),
                  "machine": {"cpus": os.cpu_count(), "load": os.getloadavg()}}
    print(json.dumps(report, indent=1))
    (args.workdir / "results.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
