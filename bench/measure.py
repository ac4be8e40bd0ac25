"""Everything measured besides load: start-up, freshness, installs and resident memory.

Each loop here is bounded in count and time; a figure that ran out of time is reported as
None (a FAIL for targets), never as the bound itself.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from packaging.utils import canonicalize_name

from bench.corpus import Corpus
from bench.servers import REPO, Server
from tests.support.distfiles import make_wheel

UV = REPO / ".venv" / "bin" / "uv"
PYTHON = REPO / ".venv" / "bin" / "python"
FRESH_PREFIX = "3.0."


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """Status and body; a refused connection or a timeout is status 0."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback URLs only)
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""
    except (OSError, TimeoutError):
        return 0, b""


def first_answer(server: Server, path: str, timeout: float, *, any_status: bool = False) -> float | None:
    """Seconds from process start to the first 200 for `path` (any HTTP answer with `any_status`:
    ours' 503 while its first generation runs), or None if it never came."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.01) + 1):
        status, _body = get(server.url + path, timeout=max(0.1, deadline - time.monotonic()))
        if status == 200 or (any_status and status > 0):
            return time.monotonic() - server.started
        if server.process.poll() is not None or time.monotonic() > deadline:
            return None
        # Every 10 ms at first, then 1% of the time waited so far (at most 100 ms): a poll every
        # 10 ms through a 40 s cold start is 4,000 requests, and answering them (and making
        # them, on the same two cores) took seconds from the generation being measured.
        time.sleep(min(0.1, max(0.01, 0.01 * (time.monotonic() - server.started))))
    return None


def settle(server: Server, path: str, timeout: float) -> None:
    """Wait for a server still working off a queue from the last load to answer again."""
    get(server.url + path, timeout=timeout)


def freshness(server: Server, corpus: Corpus, project: str, directory: Path, timeout: float) -> float | None:
    """Seconds from a new wheel renamed into `directory` until the project page lists it."""
    staging = Path(tempfile.mkdtemp(prefix="fresh-", dir=corpus.root))
    version = f"{FRESH_PREFIX}{time.time_ns() // 1000}"
    wheel = make_wheel(staging, project, version)
    target = directory / wheel.name
    url = f"{server.url}/simple/{canonicalize_name(project)}/"
    try:
        started = time.monotonic()
        wheel.rename(target)
        deadline = started + timeout
        while time.monotonic() < deadline:
            _status, body = get(url, timeout=max(0.1, deadline - time.monotonic()))
            if wheel.name.encode() in body:
                return time.monotonic() - started
            time.sleep(0.01)
        return None
    finally:
        target.unlink(missing_ok=True)
        staging.rmdir()


def remove_stale_fresh_files(corpus: Corpus) -> None:
    """A run killed mid-freshness leaves its wheel behind; the corpus must stay as made."""
    for path in [*corpus.store.glob(f"*/*-{FRESH_PREFIX}*"), *corpus.flat.glob(f"*-{FRESH_PREFIX}*")]:
        path.unlink()
    for path in corpus.root.glob("fresh-*"):
        for child in path.iterdir():
            child.unlink()
        path.rmdir()


def _timed(argv: list[str], env: dict[str, str], cwd: Path, timeout: float) -> float | None:
    started = time.monotonic()
    try:
        done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        print(f"  ! {' '.join(argv[:4])}... failed: {done.stderr.decode(errors='replace')[-300:]}")
        return None
    return time.monotonic() - started


def _install_argv(tool: str, index: str, project: str, out: str) -> list[str]:
    if tool == "pip":
        return [str(PYTHON), "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--index-url", index,
                "--dest", out, project]
    return [str(UV), "pip", "install", "--no-deps", "--no-cache", "--index-url", index, "--python",
            str(PYTHON), "--target", out, project]


def install_time(server: Server, tool: str, project: str, timeout: float) -> float | None:
    """Seconds of one `pip download` or `uv pip install` of one project, no cache, no deps."""
    env = {**os.environ, "PIP_CONFIG_FILE": "/dev/null", "UV_NO_CONFIG": "1",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    with tempfile.TemporaryDirectory(prefix=f"bench-{tool}-") as out:
        elapsed = _timed(_install_argv(tool, f"{server.url}/simple/", project, out), env, Path(out), timeout)
        return elapsed if elapsed is not None and any(Path(out).iterdir()) else None


def median_or_none(times: list[float | None]) -> float | None:
    """A single failed run fails the figure: a fast median must not hide an error."""
    if not times or any(t is None for t in times):
        return None
    return statistics.median(t for t in times if t is not None)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except OSError:
            continue
    return found


def _tree(pid: int) -> list[int]:
    """A process and all its descendants (bounded)."""
    pending, seen = [pid], list[int]()
    while pending and len(seen) < 1000:
        current = pending.pop()
        if current not in seen:
            seen.append(current)
            pending += _children(current)
    return seen


def _sum_kb(pid: int, file: str, key: str) -> float | None:
    total_kb, found = 0, False
    for current in _tree(pid):
        try:
            text = Path(f"/proc/{current}/{file}").read_text()
        except OSError:
            continue
        found = True
        total_kb += next((int(line.split()[1]) for line in text.splitlines() if line.startswith(key)), 0)
    return total_kb * 1024 / 1e6 if found else None


def rss_mb(pid: int) -> float | None:
    """VmRSS of a process and all its descendants, in MB (10^6 bytes): shared pages count in each."""
    return _sum_kb(pid, "status", "VmRSS:")


def pss_mb(pid: int) -> float | None:
    """PSS of a process and its descendants, in MB: each shared page counts once, split between
    its sharers, so this is the memory of all the processes together (forked workers share)."""
    return _sum_kb(pid, "smaps_rollup", "Pss:")


def file_mb(path: Path) -> float:
    """A file's size in MB; 0 when it is not there."""
    try:
        return path.stat().st_size / 1e6
    except FileNotFoundError:
        return 0.0


def tree_mb(root: Path) -> float:
    """The size of every file below `root`, in MB."""
    total = 0
    for directory, _dirs, names in os.walk(root):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(directory, name)).st_size  # noqa: PTH116,PTH118
    return total / 1e6
