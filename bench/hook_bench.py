"""The webhook receiver's benchmark (issue 24), run on demand, not a test:

    .venv/bin/python -m bench.hook_bench [--deliveries 50] [--seconds 1] [--workdir DIR]

A real `pypi-insiders serve` (the shipped default of worker processes) with webhooks on and one
repository with a secret, while this process holds the fetch run lock (a fetch run in progress):
1. a burst: N signed GitHub tag pushes for that repository spread over S seconds, each on its
   own connection; every answer must be 202 and the queue must hold one entry (coalesced);
2. the same N deliveries again (redeliveries keep their id): every answer 200 `duplicate`;
3. wrong signatures until the failed-attempt limit answers 429.
Prints the answer times (median, p99, max). Target: every answer well inside Gitea's 5 s and
GitHub's 10 s, in milliseconds. How many fetch runs a burst starts is systemd's part: the e2e
(`tests/e2e/in-container.sh`, section webhook) counts them under a real systemd.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from pypi_insiders import fetch_queue
from pypi_insiders.files import exclusive_lock
from tests.conftest import to_toml
from tests.support import hook_fixtures as h
from tests.support.server_fixtures import request, serve_process

KEY = "bench/hooked"


def write_config(workdir: Path) -> Path:
    secrets = workdir / "webhook-secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    (secrets / "hook").write_text(h.SECRET)
    (secrets / "hook").chmod(0o600)
    data: dict[str, Any] = {
        "server": {"listen": "127.0.0.1:0"},
        "paths": {"data": str(workdir / "data"), "cache": str(workdir / "cache")},
        "upstream": {"url": "http://127.0.0.1:9/simple/", "fallback": "off"},
        "webhooks": {"enabled": True, "secrets_dir": str(secrets)},
        "fetch": {"repos_dir": str(workdir / "repos.d"), "credentials_dir": str(workdir / "credentials")},
        "repos": {KEY: {"url": "file:///nowhere", "webhook_secret": "hook"}},
    }
    path = workdir / "config.toml"
    path.write_text(to_toml(data))
    return path


Delivery = tuple[dict[str, str], bytes]
Result = tuple[int, bytes, float]  # status, body, milliseconds


def burst(url: str, deliveries: list[Delivery], seconds: float) -> list[Result]:
    """Each delivery on its own thread and connection, started evenly over `seconds`."""
    results: list[Result] = []
    lock = threading.Lock()

    def send(delivery: Delivery) -> None:
        began = time.perf_counter()
        reply = request(url, f"/-/hooks/{KEY}", "POST", delivery[0], body=delivery[1])
        with lock:
            results.append((reply.status, reply.body.strip(), (time.perf_counter() - began) * 1000))

    threads = []
    t0 = time.monotonic()
    for number, delivery in enumerate(deliveries):
        threads.append(threading.Thread(target=send, args=(delivery,)))
        threads[-1].start()
        time.sleep(max(0.0, t0 + (number + 1) * seconds / len(deliveries) - time.monotonic()))
    for thread in threads:
        thread.join(30)
    return results


def summary(results: list[Result]) -> dict[str, Any]:
    times = sorted(r[2] for r in results)
    outcomes: dict[str, int] = {}
    for status, body, _ms in results:
        name = f"{status} {body.decode()}"
        outcomes[name] = outcomes.get(name, 0) + 1
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return {"answers": outcomes, "median_ms": round(statistics.median(times), 1), "p99_ms": round(p99, 1),
            "max_ms": round(times[-1], 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pypi-insiders-hook-bench-"))
    path = write_config(workdir)
    state = workdir / "data"
    state.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {}
    with serve_process(path) as running, exclusive_lock(state / "update.lock"):
        pushes = [h.github("push", h.github_tag_push(f"v1.{n}"), delivery=str(uuid.uuid4()))
                  for n in range(args.deliveries)]
        report["burst"] = summary(burst(running.url, pushes, args.seconds))
        report["burst"]["queue_entries"] = len(fetch_queue.pending(fetch_queue.queue_dir(state)))
        report["replays"] = summary(burst(running.url, pushes, args.seconds))
        guess = "not the secret, not at all"
        wrong = [h.github("push", h.github_tag_push(), secret=guess) for _ in range(12)]
        report["wrong_signatures"] = summary(burst(running.url, wrong, 0.5))
    print(json.dumps(report, indent=1))
    ok = (report["burst"]["answers"].keys() <= {"202 queued", "202 coalesced"}
          and report["burst"]["queue_entries"] == 1
          and report["replays"]["answers"] == {"200 duplicate": args.deliveries}
          and any(a.startswith("429 ") for a in report["wrong_signatures"]["answers"])
          and report["burst"]["max_ms"] < 1000)
    print("PASS" if ok else "FAIL", "(202 queued/coalesced, one entry, replays duplicate, answers under 1 s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
