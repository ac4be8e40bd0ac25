"""The parent's mirror sweep (`service.mirror_sweep`): every few minutes, soon after a worker
asks (a file passed through below `min_free`, a reload that lowers `max_size`), never when
the fallback is not the mirror. The thread on real files, then the service itself.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.utils import NormalizedName

from pypi_insiders import config
from pypi_insiders.mirror.layout import MirrorLayout
from pypi_insiders.mirror.sweep import ask_for_sweep
from pypi_insiders.service.mirror_sweep import keep_swept
from tests.conftest import ConfigMaker
from tests.support.mirror_upstream import Upstream
from tests.support.server_fixtures import ThreadedServer, request, serve_process, wait_for, write_index


def stored(layout: MirrorLayout, filename: str, data: bytes) -> Path:
    """A file as the mirror keeps it: under its own sha256."""
    path = layout.file(hashlib.sha256(data).hexdigest(), filename)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def removed_upstream(layout: MirrorLayout, filename: str, data: bytes) -> Path:
    """A kept file of a project upstream no longer has (its page answered 404 and was dropped)."""
    layout.gone_mark(NormalizedName(filename.split("-", maxsplit=1)[0])).touch()
    return stored(layout, filename, data)


def kept(layout: MirrorLayout) -> list[str]:
    return sorted(p.name for p in layout.files.rglob("*.whl"))


@pytest.fixture
def layout(tmp_path: Path) -> MirrorLayout:
    mirror = MirrorLayout.under(tmp_path / "cache")
    mirror.ensure()
    return mirror


class Sweeping:
    """keep_swept in a thread of its own, stopped (and joined) at the end of the test."""

    def __init__(self, loaded: config.Config, **timing: float) -> None:
        self.config = loaded  # what the thread reads at each round: a reload replaces it
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=keep_swept, args=(lambda: self.config, self.stopped),
                                       kwargs={"poll": 0.02, **timing}, daemon=True)

    def __enter__(self) -> Sweeping:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


def swept_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("mirror sweep:")]


def test_mirror_sweep_runs_every_interval_dropping_unlisted_files_and_dead_downloads(
        make_config: ConfigMaker, layout: MirrorLayout, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    loaded = config.load(str(make_config(upstream={"fallback": "mirror"})))
    unlisted = removed_upstream(layout, "gone-1.0-py3-none-any.whl", b"upstream deleted it" * 100)
    dead = layout.part("d" * 64)
    dead.write_bytes(b"a dead leader's")
    with Sweeping(loaded, every=0.3):
        assert wait_for(lambda: not unlisted.exists() and not dead.exists(), timeout=5)
        assert wait_for(lambda: bool(swept_lines(caplog)))
    [line] = swept_lines(caplog)  # later rounds freed nothing: no more lines
    assert line.levelno == logging.INFO
    assert (line.__dict__["FILES"], line.__dict__["BYTES"]) == ("1", "1900")
    assert "1 dead downloads" in line.getMessage()


def test_mirror_sweep_runs_soon_after_a_worker_asks(
        make_config: ConfigMaker, layout: MirrorLayout) -> None:
    loaded = config.load(str(make_config(upstream={"fallback": "mirror", "max_size": 10_000,
                                                   "keep_removed": True})))
    for number in range(4):
        path = stored(layout, f"far-1.{number}-py3-none-any.whl", bytes([number]) * 4000)
        past = time.time() - 1000 + number  # the LRU clock: 1.0 least recently used
        os.utime(path, (past, past))
    with Sweeping(loaded, every=3600, min_gap=0):
        time.sleep(0.3)
        assert len(kept(layout)) == 4  # nobody asked, the hour has not passed
        ask_for_sweep(layout)
        assert wait_for(lambda: kept(layout) == ["far-1.2-py3-none-any.whl", "far-1.3-py3-none-any.whl"],
                        timeout=5)
        assert wait_for(lambda: not layout.sweep_request.exists())


def test_mirror_sweep_never_runs_when_the_fallback_is_not_the_mirror(
        make_config: ConfigMaker, layout: MirrorLayout) -> None:
    loaded = config.load(str(make_config(upstream={"fallback": "proxy"})))
    unlisted = removed_upstream(layout, "gone-1.0-py3-none-any.whl", b"kept: no mirror runs")
    ask_for_sweep(layout)
    with Sweeping(loaded, every=0.05, min_gap=0):
        time.sleep(0.5)
    assert unlisted.exists()
    assert layout.sweep_request.exists()


def test_mirror_sweep_keeps_removed_files_while_keep_removed_says_so(
        make_config: ConfigMaker, layout: MirrorLayout) -> None:
    keeping = config.load(str(make_config(upstream={"fallback": "mirror", "keep_removed": True})))
    unlisted = removed_upstream(layout, "gone-1.0-py3-none-any.whl", b"upstream deleted it")
    with Sweeping(keeping, every=0.05) as sweeping:
        time.sleep(0.5)
        assert unlisted.exists()
        sweeping.config = config.load(str(make_config(upstream={"fallback": "mirror"})))  # reloaded
        assert wait_for(lambda: not unlisted.exists(), timeout=5)


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, str]]:
    fake = Upstream()
    with ThreadedServer(fake.app) as server:
        yield fake, server.url


def test_service_sweeps_after_a_reload_lowers_max_size(
        make_config: ConfigMaker, data_dir: Path, tmp_path: Path, upstream: tuple[Upstream, str]) -> None:
    fake, upstream_url = upstream
    shas = [fake.add("far", f"far-1.{n}-py3-none-any.whl", bytes([n]) * 4000) for n in range(3)]
    write_index(data_dir / "index", {})
    table = {"url": upstream_url + "simple/", "fallback": "mirror", "min_free": 0}
    config_file = make_config(server={"processes": 1}, upstream={**table, "max_size": "1 MiB"})
    layout = MirrorLayout.under(tmp_path / "cache")
    with serve_process(config_file) as running:
        for number, sha in enumerate(shas):
            assert request(running.url, f"/mirror/far/{sha}/far-1.{number}-py3-none-any.whl").status == 200
            time.sleep(0.02)
        assert len(kept(layout)) == 3
        make_config(server={"processes": 1}, upstream={**table, "max_size": 10_000})
        running.process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: len(kept(layout)) == 2, timeout=20)
        assert "far-1.0-py3-none-any.whl" not in kept(layout)  # the least recently used
        assert wait_for(lambda: "mirror sweep: 1 files, 4000 bytes freed" in running.output())


def test_service_sweeps_after_a_file_is_passed_through_below_min_free(
        make_config: ConfigMaker, data_dir: Path, tmp_path: Path, upstream: tuple[Upstream, str]) -> None:
    fake, upstream_url = upstream
    sha = fake.add("far", "far-1.0-py3-none-any.whl", b"p" * 5000)
    write_index(data_dir / "index", {})
    config_file = make_config(server={"processes": 2}, upstream={
        "url": upstream_url + "simple/", "fallback": "mirror", "min_free": "1000 TiB"})
    layout = MirrorLayout.under(tmp_path / "cache")
    layout.ensure()
    unlisted = removed_upstream(layout, "gone-1.0-py3-none-any.whl", b"upstream deleted it")
    with serve_process(config_file) as running:
        time.sleep(1.5)
        assert unlisted.exists()  # the five minutes have not passed
        for _ in range(4):  # whichever process answers, the parent sweeps
            assert request(running.url, f"/mirror/far/{sha}/far-1.0-py3-none-any.whl").body == b"p" * 5000
        assert wait_for(lambda: not unlisted.exists(), timeout=20)
        assert wait_for(lambda: "mirror sweep: 1 files" in running.output())
    assert kept(layout) == []
