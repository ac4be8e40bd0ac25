"""A fresh instance serves before its first generation is over: pins first, then 503 + Retry-After
for local projects whose pages are not written yet (never upstream's), and /status shows it."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path

import pytest

from pypi_insiders import config
from pypi_insiders.files import exclusive_lock
from pypi_insiders.index import progress
from pypi_insiders.state_layout import CacheLayout, StateLayout
from tests.conftest import ConfigMaker
from tests.support.distfiles import make_wheel
from tests.support.server_fixtures import (
    FakeUpstream,
    Running,
    ThreadedServer,
    _listen_url,
    pypi_insiders,
    request,
    service_env,
    stop_process,
    wait_for,
)


@contextmanager
def started(config_file: Path) -> Iterator[Running]:
    """`pypi-insiders serve` until it listens (not until /simple/ answers 200)."""
    log = config_file.parent / f"serve-{time.monotonic_ns()}.log"
    with log.open("w") as out:
        process = subprocess.Popen([*pypi_insiders(), "--config", str(config_file), "serve"],
                                   stdout=out, stderr=subprocess.STDOUT, text=True, env=service_env(),
                                   cwd=config_file.parent)
    try:
        yield Running(process, _listen_url(log, process, time.monotonic() + 30), log)
    finally:
        stop_process(process)


@pytest.fixture
def upstream() -> Iterator[ThreadedServer]:
    fake = FakeUpstream(projects={"remote-only": {"remote_only-1.0-py3-none-any.whl": b"x"},
                                  "held-pkg": {"held_pkg-99.0-py3-none-any.whl": b"public"}})
    with ThreadedServer(fake.app) as server:
        yield server


def test_first_generation_pins_then_answers_503_until_generated(
        make_config: ConfigMaker, data_dir: Path, tmp_path: Path, upstream: ThreadedServer) -> None:
    store = data_dir / "store"
    make_wheel(store / "held-pkg", "held-pkg", "1.0")
    make_wheel(store / "misc", "Elsewhere.Pkg", "2.0")  # a file outside its project's directory
    config_file = make_config(upstream={"url": upstream.url + "simple/", "fallback": "redirect"})
    loaded = config.load(str(config_file))
    held = ExitStack()  # the cache's lock, taken first: the generation waits for it, serving does not
    (tmp_path / "cache").mkdir()
    held.enter_context(exclusive_lock(tmp_path / "cache" / "index.sqlite3.lock"))
    try:
        with started(config_file) as running:
            pins = StateLayout(loaded.paths.state).pinned_projects.read_text().split()
            assert {"held-pkg", "elsewhere-pkg"} <= set(pins)  # pinned before anything was served
            for name in ("held-pkg", "elsewhere-pkg"):  # upstream has a public held-pkg: never served
                reply = request(running.url, f"/simple/{name}/")
                assert (reply.status, reply.header("Retry-After")) == (503, str(progress.RETRY_AFTER)), name
            assert request(running.url, "/simple/").status == 503
            assert request(running.url, "/simple/remote-only/").status == 302  # not local: upstream's
            status = json.loads(request(running.url, "/status.json").body)
            assert (status["index"]["generating"], status["index"]["projects"]) == (True, 2)
            held.close()
            assert wait_for(lambda: request(running.url, "/simple/held-pkg/").status == 200, timeout=30)
            assert b"held_pkg-1.0" in request(running.url, "/simple/held-pkg/").body
            assert b"elsewhere_pkg-2.0" in request(running.url, "/simple/elsewhere-pkg/").body
            assert wait_for(lambda: json.loads(request(running.url, "/status.json").body)["index"]
                            == {"generating": False}, timeout=10)
            assert not CacheLayout(loaded.paths.cache).first_generation.exists()
            assert request(running.url, "/simple/never-seen/").status == 302
    finally:
        held.close()


def test_first_generation_serves_while_the_generation_waits(make_config: ConfigMaker, data_dir: Path) -> None:
    """A first answer with the generation held: it needs the pins and the socket only."""
    for number in range(200):
        (data_dir / "store" / f"p-{number}").mkdir(parents=True)
        make_wheel(data_dir / "store" / f"p-{number}", f"p-{number}", "1.0")
    (data_dir.parent / "cache").mkdir()
    with exclusive_lock(data_dir.parent / "cache" / "index.sqlite3.lock"):
        began = time.monotonic()
        with started(make_config()) as running:
            assert request(running.url, "/simple/p-7/").status == 503
            assert time.monotonic() - began < 10  # generous for a loaded CI machine; the bench measures


@pytest.mark.slow
def test_first_generation_killed_keeps_its_committed_batches(make_config: ConfigMaker,
                                                             data_dir: Path) -> None:
    """kill -9 in the middle of a cold generation: what was committed stays, and is not read again."""
    total = 6000
    for number in range(total // 10):
        for minor in range(10):
            make_wheel(data_dir / "store" / f"many-{number}", f"many-{number}", f"1.{minor}")
    config_file = make_config()
    loaded = config.load(str(config_file))
    database = loaded.paths.cache / "index.sqlite3"
    argv = [*pypi_insiders(), "--config", str(config_file), "generate"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=service_env())
    try:
        assert wait_for(lambda: _rows(database) >= 2000, timeout=120, step=0.01)
        assert process.poll() is None, "the generation ended before it could be killed"
        readers = _children(process.pid)  # its pool of processes reading files (and their helpers)
        assert readers
        process.kill()
    finally:
        process.kill()
        process.wait(timeout=30)
    kept = _rows(database)
    assert 2000 <= kept < total
    assert wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in readers), timeout=10)
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=service_env(), check=True)
    assert f"{total - kept} files read" in again.stderr
    assert f"{total} files" in again.stderr


def _rows(database: Path) -> int:
    """Committed rows, read as another process would (read only; nothing there yet is 0)."""
    if not database.exists():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as db:
            count: int = db.execute("SELECT count(*) FROM files").fetchone()[0]
    except sqlite3.OperationalError:  # the schema is not committed yet
        return 0
    return count



def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found |= {int(child) for child in task.read_text().split()}
    return found
