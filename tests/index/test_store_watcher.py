"""The watcher against a real store: real files, real inotify events, real timing bounds."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from pypi_insiders import config
from pypi_insiders.index.generate import Generator
from pypi_insiders.index.store_watcher import Watcher, coalesce
from pypi_insiders.store import Store
from tests.conftest import ConfigMaker
from tests.support.distfiles import make_wheel


@pytest.fixture
def cfg(make_config: ConfigMaker) -> config.Config:
    return config.load(str(make_config(index={"debounce": 0.2, "rescan_interval": 300})))


@pytest.fixture
def generator(cfg: config.Config) -> Iterator[Generator]:
    made = Generator.from_config(cfg)
    made.generate_all()
    yield made
    made.close()


class Recorder:
    """The real generator, with a record of every batch of paths the watcher handed it.

    The batches are what the tests observe instead of sleeping and expecting nothing: a marker
    file dropped after the action under test is handled after it, so once the marker is served,
    every batch the action caused is in the record.
    """

    def __init__(self, generator: Generator) -> None:
        self.generator = generator
        self.batches: list[list[str]] = []
        self.finished = 0  # batches the generator is done with: its stats count only those
        self.rescans = 0

    def generate_all(self) -> None:
        self.rescans += 1
        self.generator.generate_all()

    def update_paths(self, relpaths: Iterable[str]) -> None:
        self.batches.append(sorted(relpaths))
        self.generator.update_paths(self.batches[-1])
        self.finished += 1

    def settled(self) -> bool:
        """A page is served before the generator counts it: read its stats only once this holds."""
        return self.finished == len(self.batches)

    def refresh_yanks(self) -> None:
        self.generator.refresh_yanks()


@pytest.fixture
def recorder(generator: Generator) -> Recorder:
    return Recorder(generator)


def drop_marker(cfg: config.Config, tmp_path: Path, version: str = "1.0") -> None:
    """A file the watcher must publish; waiting for it waits for everything queued before it."""
    wheel = make_wheel(tmp_path / "marker-build" / version, "marker", version)
    Store(cfg.paths.store).add(wheel.name, wheel)
    wait_for(lambda: wheel.name in served(cfg, "marker"), 5.0)


@pytest.fixture
def watching(cfg: config.Config, generator: Generator, recorder: Recorder) -> Iterator[Watcher]:
    watcher = Watcher(cfg, recorder)
    runs = generator.stats.runs
    watcher.start()
    wait_for(lambda: generator.stats.runs > runs, 5)  # the start-up rescan is done
    yield watcher
    watcher.stop()
    assert not watcher.is_alive()


def wait_for(condition: Callable[[], bool], seconds: float) -> float:
    """Seconds it took for `condition` to hold; fails the test after `seconds`."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > seconds:
            pytest.fail(f"condition not met within {seconds} s")
        time.sleep(0.01)
    return time.monotonic() - began


def served(cfg: config.Config, project: str) -> list[str]:
    try:
        page = json.loads((cfg.paths.index / "simple" / project / "index.json").read_bytes())
    except FileNotFoundError:
        return []
    return [f["filename"] for f in page["files"]]


@pytest.mark.parametrize(("paths", "expected"), [
    (["a/x.whl", "a", "b/y.whl"], ["a", "b/y.whl"]),
    (["ab/x.whl", "a"], ["a", "ab/x.whl"]),
    (["", "a/x.whl"], [""]),
    (["a/x.whl", "a/x.whl"], ["a/x.whl"]),
])
def test_coalesce_keeps_only_outermost_paths(paths: list[str], expected: list[str]) -> None:
    assert coalesce(paths) == expected


def test_watcher_publishes_a_new_file(
        cfg: config.Config, watching: Watcher, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "build", "fresh", "1.0")
    Store(cfg.paths.store).add(wheel.name, wheel)
    wait_for(lambda: served(cfg, "fresh") == [wheel.name], 10.0)  # how fast: bench/ measures it


def test_watcher_unpublishes_a_deleted_file(cfg: config.Config, generator: Generator, tmp_path: Path) -> None:
    keep = make_wheel(cfg.paths.store / "gone", "gone", "1.0")
    drop = make_wheel(cfg.paths.store / "gone", "gone", "2.0")
    generator.generate_all()
    watcher = Watcher(cfg, generator)
    watcher.start()
    try:
        drop.unlink()
        wait_for(lambda: served(cfg, "gone") == [keep.name], 10.0)
        assert not (cfg.paths.index / "packages" / "gone" / f"{drop.name}.metadata").exists()
    finally:
        watcher.stop()


def test_watcher_turns_a_burst_into_one_regeneration(
        cfg: config.Config, recorder: Recorder, watching: Watcher, tmp_path: Path) -> None:
    generator = recorder.generator
    built = [make_wheel(tmp_path / "build", "burst", f"1.{n}") for n in range(10)]
    target = cfg.paths.store / "burst"
    target.mkdir()
    regenerated = generator.stats.projects_regenerated
    for wheel in built:
        os.link(wheel, target / wheel.name)
    wait_for(lambda: len(served(cfg, "burst")) == 10, 10.0)
    drop_marker(cfg, tmp_path)  # a straggling second batch of the burst would come before it
    wait_for(recorder.settled, 5.0)
    assert generator.stats.projects_regenerated == regenerated + 2, recorder.batches  # burst, marker
    assert [b for b in recorder.batches if any(p.startswith("burst") for p in b)] == [["burst"]]


def test_watcher_ignores_temporary_files(
        cfg: config.Config, recorder: Recorder, watching: Watcher, tmp_path: Path) -> None:
    (cfg.paths.store / ".upload.whl.part").write_bytes(b"half a file")
    (cfg.paths.store / "notes.txt~").write_bytes(b"an editor's backup")
    drop_marker(cfg, tmp_path)
    assert [p for batch in recorder.batches for p in batch if not p.startswith("marker")] == []


def test_watcher_picks_up_a_directory_moved_in(cfg: config.Config, watching: Watcher, tmp_path: Path) -> None:
    outside = tmp_path / "moved"
    one = make_wheel(outside, "moved", "1.0")
    two = make_wheel(outside / "sub", "moved", "2.0")
    outside.rename(cfg.paths.store / "moved")
    wait_for(lambda: served(cfg, "moved") == [one.name, two.name], 10.0)
    (cfg.paths.store / "moved").rename(tmp_path / "away")
    wait_for(lambda: served(cfg, "moved") == [], 10.0)


def test_watcher_rescan_catches_changes_made_while_stopped(
        cfg: config.Config, generator: Generator, tmp_path: Path) -> None:
    watcher = Watcher(cfg, generator)
    watcher.start()
    watcher.stop()
    late = make_wheel(cfg.paths.store / "late", "late", "1.0")
    again = Watcher(cfg, generator)
    again.start()
    try:
        wait_for(lambda: served(cfg, "late") == [late.name], 10.0)
    finally:
        again.stop()


def test_watcher_rescans_periodically(make_config: ConfigMaker) -> None:
    cfg = config.load(str(make_config(index={"rescan_interval": 0.3})))
    generator = Generator.from_config(cfg)
    watcher = Watcher(cfg, generator)
    watcher.start()
    try:
        wait_for(lambda: generator.stats.runs >= 3, 5.0)
    finally:
        watcher.stop()
        generator.close()


def test_watcher_survives_a_failed_regeneration(
        cfg: config.Config, generator: Generator, watching: Watcher, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    blocker = cfg.paths.index / "simple" / "blocked"
    blocker.write_text("a file where the project's directory must go")
    caplog.set_level(logging.ERROR, logger="pypi_insiders.index.store_watcher")
    first = make_wheel(tmp_path / "build", "blocked", "1.0")
    Store(cfg.paths.store).add(first.name, first)
    wait_for(lambda: any("regeneration failed" in r.getMessage() for r in caplog.records), 10.0)
    assert watching.is_alive()
    blocker.unlink()
    second = make_wheel(tmp_path / "build", "blocked", "2.0")
    Store(cfg.paths.store).add(second.name, second)
    wait_for(lambda: served(cfg, "blocked") == [first.name, second.name], 10.0)


def test_watcher_creates_a_missing_store(make_config: ConfigMaker, tmp_path: Path) -> None:
    cfg = config.load(str(make_config(paths={"store": str(tmp_path / "not-yet")})))
    generator = Generator.from_config(cfg)
    watcher = Watcher(cfg, generator)
    watcher.start()
    try:
        assert (tmp_path / "not-yet").is_dir()
        wheel = make_wheel(tmp_path / "not-yet" / "newborn", "newborn", "1.0")
        wait_for(lambda: served(cfg, "newborn") == [wheel.name], 10.0)
    finally:
        watcher.stop()
        generator.close()


def test_watcher_reconfigure_shortens_the_rescan_interval(
        make_config: ConfigMaker, cfg: config.Config, recorder: Recorder, watching: Watcher,
        tmp_path: Path) -> None:
    generator = recorder.generator
    rescans = recorder.rescans
    drop_marker(cfg, tmp_path)
    wait_for(recorder.settled, 5.0)
    assert recorder.rescans == rescans  # 300 s apart: none between start-up and the marker
    runs = generator.stats.runs
    watching.reconfigure(config.load(str(make_config(index={"rescan_interval": 0.2}))))
    wait_for(lambda: generator.stats.runs >= runs + 2, 10.0)


def test_watcher_publishes_a_file_renamed_into_place(
        cfg: config.Config, watching: Watcher, tmp_path: Path) -> None:
    """rsync and atomic writers rename a hidden temp file: watchdog reports a move, not a creation."""
    wheel = make_wheel(tmp_path / "build", "renamed", "1.0")
    target = cfg.paths.store / "renamed"
    target.mkdir()
    temp = target / f".{wheel.name}.tmp"
    temp.write_bytes(wheel.read_bytes())
    temp.replace(target / wheel.name)
    wait_for(lambda: served(cfg, "renamed") == [wheel.name], 10.0)


def test_watcher_keeps_watching_a_store_deleted_and_made_again(
        cfg: config.Config, generator: Generator, watching: Watcher, tmp_path: Path) -> None:
    old = make_wheel(tmp_path / "build", "before", "1.0")
    Store(cfg.paths.store).add(old.name, old)
    wait_for(lambda: served(cfg, "before") == [old.name], 10.0)
    shutil.rmtree(cfg.paths.store)
    wait_for(lambda: served(cfg, "before") == [], 10.0)
    wait_for(cfg.paths.store.is_dir, 3.0)  # the watcher made it again to watch it
    new = make_wheel(tmp_path / "build", "after", "1.0")
    Store(cfg.paths.store).add(new.name, new)
    wait_for(lambda: served(cfg, "after") == [new.name], 10.0)
    assert watching.is_alive()
