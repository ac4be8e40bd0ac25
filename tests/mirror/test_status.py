"""The mirror's `/status` section from its disk and counters (mirror.py `scan`, `counts`, `status`)."""

from __future__ import annotations

import hashlib

import pytest

from pypi_insiders import config
from pypi_insiders.mirror import mirror
from pypi_insiders.mirror.layout import MirrorLayout
from pypi_insiders.mirror.stats import MirrorStats
from tests.conftest import ConfigMaker


def _loaded(make_config: ConfigMaker, url: str = "http://127.0.0.1:9/simple/") -> config.Config:
    return config.load(str(make_config(upstream={"url": url, "fallback": "mirror", "max_size": 0,
                                                 "min_free": "1 MiB"})))


def test_mirror_status_from_a_scan_and_the_counters(make_config: ConfigMaker) -> None:
    loaded = _loaded(make_config)
    layout = MirrorLayout.under(loaded.paths.cache)
    layout.ensure()
    data = b"w" * 300
    sha = hashlib.sha256(data).hexdigest()
    layout.file(sha, "a-1.0-py3-none-any.whl").parent.mkdir(parents=True)
    layout.file(sha, "a-1.0-py3-none-any.whl").write_bytes(data)
    layout.file(sha, "a-1.0-py3-none-any.whl.metadata").write_bytes(b"Metadata-Version: 2.1\n")
    stats = MirrorStats(layout.stats)
    stats.add(hits=4, misses=1, bytes_upstream=300, stale_pages=2)
    stats.error("http://127.0.0.1:9/simple/a/: connection refused")
    shown = mirror.scanned_now(loaded.paths.cache, loaded.upstream)
    assert (shown.bytes_used, shown.files, shown.max_size, shown.min_free) == (300, 1, None, 1024 * 1024)
    assert (shown.hits, shown.misses, shown.bytes_from_upstream, shown.stale_pages_served) == (4, 1, 300, 2)
    assert shown.last_upstream_error == "http://127.0.0.1:9/simple/a/: connection refused"
    assert shown.last_upstream_error_at is not None
    assert shown.free_disk is not None
    assert shown.scanned_at is not None


def test_mirror_status_of_a_mirror_never_used_is_all_zero(make_config: ConfigMaker) -> None:
    loaded = _loaded(make_config)
    shown = mirror.scanned_now(loaded.paths.cache, loaded.upstream)
    assert (shown.bytes_used, shown.files, shown.hits, shown.last_upstream_error) == (0, 0, 0, None)
    assert not MirrorLayout.under(loaded.paths.cache).stats.exists()  # reading creates nothing


@pytest.mark.parametrize(("url", "error", "shown"), [
    ("http://me:s3cret@127.0.0.1:9/simple/", "upstream said s3cret and me", "upstream said *** and me"),
    ("http://tok%2Fen:@127.0.0.1:9/simple/", "bad tok/en and tok%2Fen", "bad *** and ***"),
    ("http://127.0.0.1:9/simple/", "nothing to mask: s3cret", "nothing to mask: s3cret"),
])
def test_mirror_status_masks_upstreams_credentials_worded_anywhere(
        make_config: ConfigMaker, url: str, error: str, shown: str) -> None:
    """Errors name URLs by `display_url`; a message worded elsewhere is masked all the same."""
    loaded = _loaded(make_config, url)
    MirrorStats(MirrorLayout.under(loaded.paths.cache).stats).error(error)
    assert mirror.scanned_now(loaded.paths.cache, loaded.upstream).last_upstream_error == shown

