"""The speed check of issue 8: one project page read with a read token against the same page read
anonymously, by the same server in the same run, at each concurrency.

The target: token reads reach at least 80% of the anonymous requests per second, with no
errors (a 401 or 403 would count as one, and would be fast). The token belongs to a user
`bench-reader` added to ours' users file before it starts; the header reaches wrk through its
environment (paths.lua reads WRK_AUTHORIZATION), never through its argv, and the token is
never written anywhere.
"""

from __future__ import annotations

import base64
import http.client
import subprocess
import time
from collections.abc import Mapping
from http import HTTPStatus
from pathlib import Path
from typing import Any

from bench import measure, report, servers
from bench.load import LoadResult, run_wrk

USER = "bench-reader"
TARGET = 0.8
SETTLE_TIMEOUT = 120.0


def add_reader(config: Path) -> str:
    """A read token for USER in the users file of `config` (its secret changed when it exists)."""
    argv = [str(servers.VENV_PYTHON), "-m", "pypi_insiders", "--config", str(config), "users", "add", USER,
            "--token"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                          stdin=subprocess.DEVNULL, cwd=servers.REPO)
    if done.returncode != 0:
        msg = f"users add {USER} failed: {done.stderr.strip()}"
        raise RuntimeError(msg)
    return done.stdout.split()[0]


def authorization(token: str) -> str:
    return "Basic " + base64.b64encode(f"__token__:{token}".encode()).decode()


def first_read(server: servers.Server, page: str, header: str) -> tuple[int, float]:
    host, _, port = server.url.removeprefix("http://").rpartition(":")
    started = time.monotonic()
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", page, headers={"Authorization": header})
        response = conn.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    finally:
        conn.close()


def run_pairs(server: servers.Server, page: str, token: str, *, connections: tuple[int, ...],
              duration: float, rounds: int) -> list[dict[str, object]]:
    """Anonymous and token runs of one page in turn, in alternating order; the best round of each."""
    header = {"WRK_AUTHORIZATION": authorization(token)}
    # One request first, so the runs measure reads with a verified token (the steady state the
    # target is about): a cold start sends every connection's first request at once, and each
    # of those pays for the KDF until one of them has filled the cache.
    status, seconds = first_read(server, page, header["WRK_AUTHORIZATION"])
    print(f"  {server.name:10} first read with the token: {status} after {seconds:.3f} s")
    if status != HTTPStatus.OK:
        msg = f"a read with the token was answered {status}, not 200"
        raise RuntimeError(msg)
    out: list[dict[str, object]] = []
    for conns in connections:
        best: dict[str, LoadResult] = {}
        errors = {"anonymous": 0, "token": 0}
        for turn in range(rounds):
            kinds = ("anonymous", "token") if turn % 2 == 0 else ("token", "anonymous")
            for kind in kinds:
                result = run_wrk(server.url, f"project_{kind}", [page], conns, duration,
                                 env=header if kind == "token" else None)
                print(f"  {server.name:10} project {kind:9} c{conns:<3} {result.rps:10.1f} rps  "
                      f"p50 {result.p50_ms:8.2f} ms  p99 {result.p99_ms:8.2f} ms  errors {result.errors}")
                errors[kind] += result.errors
                if kind not in best or result.rps > best[kind].rps:
                    best[kind] = result
                measure.settle(server, page, timeout=SETTLE_TIMEOUT)
        for kind, result in best.items():
            out.append({**result.as_dict(), "errors": errors[kind]})
    return out


def targets(results: Mapping[str, Mapping[str, Any]], connections: tuple[int, ...]) -> list[report.Target]:
    loads = results.get("ours", {}).get("token_load", [])
    rows = {(row["scenario"], row["connections"]): row for row in loads}
    found: list[report.Target] = []
    for conns in connections:
        anonymous, token = rows.get(("project_anonymous", conns)), rows.get(("project_token", conns))
        if anonymous is None or token is None:
            continue
        ratio = token["rps"] / anonymous["rps"] if anonymous["rps"] else 0.0
        found.append(report.Target(
            f"project c{conns} with a token >= {TARGET:.0%} of anonymous rps, no errors",
            ratio >= TARGET and anonymous["errors"] == 0 and token["errors"] == 0,
            f"{ratio:.0%} ({token['rps']:.0f} / {anonymous['rps']:.0f}), "
            f"{token['errors']} + {anonymous['errors']} errors"))
    return found
