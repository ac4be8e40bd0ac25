"""The parent's status refresher: a new snapshot when its inputs change, a warning once per cause;
the mirror's section, its counters followed at once and its disk scanned seldom."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import pytest

from pypi_insiders import config
from pypi_insiders.fetch import repo_state
from pypi_insiders.mirror.layout import MirrorLayout
from pypi_insiders.mirror.stats import MirrorStats
from pypi_insiders.status_report import MirrorStatus, Snapshot
from tests.conftest import ConfigMaker
from tests.support.dir_opens import DirectoryOpens
from tests.support.server_fixtures import refreshing, wait_for


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


def _mirror(snapshot: Snapshot) -> MirrorStatus | None:
    report = snapshot.read()
    return report.mirror if report is not None else None


def _keep(layout: MirrorLayout, data: bytes) -> None:
    """A verified file as the mirror stores it (its path is the layout's to spell)."""
    path = layout.file(hashlib.sha256(data).hexdigest(), "far-1.0-py3-none-any.whl")
    path.parent.mkdir(parents=True)
    path.write_bytes(data)


def test_status_refresh_follows_the_mirror_counters_and_scans_the_disk_seldom(
        make_config: ConfigMaker) -> None:
    table = {"fallback": "mirror", "max_size": "1 MiB", "min_free": 0}
    loaded = config.load(str(make_config(upstream=table)))
    layout = MirrorLayout.under(loaded.paths.cache)
    layout.ensure()
    _keep(layout, b"x" * 1000)
    stats = MirrorStats(layout.stats)
    with DirectoryOpens(layout.files) as opens, refreshing(loaded, poll=0.5, max_age=60) as snapshot:
        assert wait_for(lambda: _mirror(snapshot) is not None)
        first = _mirror(snapshot)
        assert first is not None
        assert (first.bytes_used, first.files, first.max_size, first.hits) == (1000, 1, 1024 * 1024, 0)
        time.sleep(1.2)  # two looks at the inputs, nothing changed: no second scan
        assert opens.count() == 1
        stats.add(hits=3, stale_pages=1)  # counters only: the snapshot follows, the disk is not scanned
        assert wait_for(lambda: (_mirror(snapshot) or first).hits == 3)
        assert opens.count() == 1
        # A miss is counted just before its file is published: the look that sees the count
        # scans, and the next one scans again.
        stats.add(misses=1, bytes_upstream=500)
        assert wait_for(lambda: (_mirror(snapshot) or first).misses == 1)
        _keep(layout, b"y" * 500)
        assert wait_for(lambda: (_mirror(snapshot) or first).files == 2, timeout=3)
        shown = _mirror(snapshot)
        assert shown is not None
        assert (shown.bytes_used, shown.misses, shown.bytes_from_upstream, shown.stale_pages_served) == \
            (1500, 1, 500, 1)
        time.sleep(1.2)
        assert opens.count() == 3


def test_status_refresh_has_no_mirror_section_without_the_mirror(make_config: ConfigMaker) -> None:
    loaded = config.load(str(make_config(upstream={"fallback": "redirect"})))
    with refreshing(loaded) as snapshot:
        assert wait_for(lambda: snapshot.read() is not None)
        report = snapshot.read()
        assert report is not None
        assert report.mirror is None
