"""The parent's status refresher: a new snapshot when its inputs change, a warning once per cause."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pypi_insiders import config
from pypi_insiders.fetch import repo_state
from pypi_insiders.service import status_refresh
from pypi_insiders.status_report import Snapshot
from tests.conftest import ConfigMaker
from tests.support.server_fixtures import wait_for


@contextmanager
def refreshing(loaded: config.Config) -> Iterator[Snapshot]:
    stopped = threading.Event()
    worker = threading.Thread(target=status_refresh.keep_fresh, args=(lambda: loaded, stopped),
                              kwargs={"poll": 0.05}, daemon=True)
    worker.start()
    try:
        yield Snapshot.in_cache(loaded.paths.cache)
    finally:
        stopped.set()
        worker.join(timeout=10)
        assert not worker.is_alive()


def test_status_refresh_follows_a_state_file(make_config: ConfigMaker) -> None:
    loaded = config.load(str(make_config(repos={"demo": {"url": "/srv/demo"}})))
    with refreshing(loaded) as snapshot:
        assert wait_for(lambda: snapshot.read() is not None)
        report = snapshot.read()
        assert report is not None
        assert report.repositories[0].last_result is None
        repo_state.save(loaded, repo_state.RepoState("demo", last_check=1.0, last_result="updated"))
        assert wait_for(lambda: (snapshot.read() or report).repositories[0].last_result == "updated")


def test_status_refresh_survives_a_cache_it_cannot_write(
        make_config: ConfigMaker, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    loaded = config.load(str(make_config()))
    (tmp_path / "cache").write_text("a file where the cache directory should be")
    with refreshing(loaded) as snapshot:
        assert wait_for(lambda: "cannot refresh the status snapshot" in caplog.text)
        assert wait_for(lambda: False, timeout=0.3) is False  # a few more polls, the same cause
        (tmp_path / "cache").unlink()
        assert wait_for(lambda: snapshot.read() is not None)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
