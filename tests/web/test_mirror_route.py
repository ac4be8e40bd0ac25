"""The caching mirror (`fallback = "mirror"`) against a stand-in upstream on loopback: pages
rendered here with relative links and PEP 700 fields, files fetched once and verified before
a client holds them whole, stale pages, the cooldown, allow and deny, and the rule that a local
name never reaches upstream.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import json
import logging
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pypi_insiders import config
from pypi_insiders.files import exclusive_lock
from pypi_insiders.index.pins import write_pins
from pypi_insiders.service import status_refresh
from pypi_insiders.state_layout import StateLayout
from pypi_insiders.web.app import make_app
from tests.conftest import ConfigMaker
from tests.support.dir_opens import DirectoryOpens
from tests.support.distfiles import make_wheel
from tests.support.mirror_fixtures import Start, mirror_servers, short_read, stand_in_upstream, stored_files
from tests.support.mirror_upstream import Upstream
from tests.support.raw_server import RawServer, reply
from tests.support.server_fixtures import (
    JSON_TYPE,
    FakeUpstream,
    Reply,
    ThreadedServer,
    refreshing,
    request,
    serve_process,
    wait_for,
    write_index,
)

DAY = 86400.0


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, str]]:
    with stand_in_upstream() as served:
        yield served


@pytest.fixture
def start(make_config: ConfigMaker, data_dir: Path, upstream: tuple[Upstream, str]) -> Iterator[Start]:
    with mirror_servers(make_config, data_dir, upstream) as run:
        yield run


def fetch(url: str, path: str, **headers: str) -> Reply:
    return request(url, path, headers=headers)


def target(entry: dict[str, Any]) -> str:
    """A file's URL as a client resolves it against /simple/NAME/."""
    url: str = entry["url"]
    return urljoin("http://x/simple/any/", url).removeprefix("http://x").split("#")[0]


def links(page: bytes) -> list[dict[str, Any]]:
    files: list[dict[str, Any]] = json.loads(page)["files"]
    return files


# ------------------------------------------------------------------ pages


def test_mirror_page_is_ours_with_relative_links_and_pep700_fields(
        start: Start, upstream: tuple[Upstream, str]) -> None:
    fake, _ = upstream
    sha = fake.add("far", "far-1.0-py3-none-any.whl", b"x" * 5000, uploaded=1_700_000_000.5)
    url, _app = start()
    answer = fetch(url, "/simple/far/", Accept=JSON_TYPE, Host="evil.example", **{"X-Forwarded-Host": "evil"})
    assert answer.status == 200
    [entry] = links(answer.body)
    assert entry["url"] == f"../../mirror/far/{sha}/far-1.0-py3-none-any.whl#sha256={sha}"
    assert entry["size"] == 5000
    assert entry["upload-time"] == "2023-11-14T22:13:20.500000Z"
    assert entry["requires-python"] == ">=3.8"
    assert entry["yanked"] is False
    assert json.loads(answer.body)["versions"] == ["1.0"]
    html = fetch(url, "/simple/far/").body.decode()
    assert 'data-upload-time="2023-11-14T22:13:20.500000Z"' in html
    assert f'href="../../mirror/far/{sha}/far-1.0-py3-none-any.whl#sha256={sha}"' in html
    assert "evil" not in html
    assert "127.0.0.1" not in html


def test_mirror_page_is_gzipped_for_clients_that_accept_it(
        start: Start, upstream: tuple[Upstream, str]) -> None:
    for number in range(40):
        upstream[0].add("big", f"big-1.{number}-py3-none-any.whl", b"%d" % number)
    url, _app = start()
    answer = fetch(url, "/simple/big/", **{"Accept-Encoding": "gzip"})
    assert answer.header("Content-Encoding") == "gzip"
    assert b"big-1.39-py3-none-any.whl" in gzip.decompress(answer.body)
    assert fetch(url, "/simple/big/").header("Content-Encoding") is None


def test_mirror_page_persists_and_is_served_stale_when_upstream_fails(
        start: Start, upstream: tuple[Upstream, str]) -> None:
    fake, _ = upstream
    fake.add("far", "far-1.0-py3-none-any.whl", b"abc")
    url, _app = start(cache_ttl=0)
    assert fetch(url, "/simple/far/").header("Cache-Control") == "max-age=60, public"
    fake.faults["page:far"] = "500"
    again = fetch(url, "/simple/far/")
    assert again.status == 200
    assert again.header("Cache-Control") == "no-cache"
    # A new process (a restart) finds the page on disk.
    url2, _app2 = start(cache_ttl=0)
    restarted = fetch(url2, "/simple/far/")
    assert (restarted.status, restarted.header("Cache-Control")) == (200, "no-cache")
    assert b"far-1.0-py3-none-any.whl" in restarted.body


def test_mirror_page_with_an_older_serial_keeps_the_stored_one(
        start: Start, upstream: tuple[Upstream, str], caplog: pytest.LogCaptureFixture) -> None:
    fake, _ = upstream
    fake.add("far", "far-1.0-py3-none-any.whl", b"abc")
    url, _app = start(cache_ttl=0)
    fetch(url, "/simple/far/")
    fake.add("far", "far-2.0-py3-none-any.whl", b"new")
    fake.faults["page:far"] = "older-serial"
    answer = fetch(url, "/simple/far/")
    assert b"far-2.0" not in answer.body
    assert answer.header("Cache-Control") == "no-cache"
    assert any("older than the stored" in r.getMessage() for r in caplog.records)


def test_mirror_page_without_a_copy_is_502_when_upstream_fails(
        start: Start, upstream: tuple[Upstream, str]) -> None:
    upstream[0].add("far", "far-1.0-py3-none-any.whl", b"abc")
    upstream[0].faults["page:far"] = "500"
    url, _app = start()
    answer = fetch(url, "/simple/far/")
    assert (answer.status, answer.header("Retry-After")) == (502, "5")
    assert fetch(url, "/simple/nothing-here/").status == 404


def test_mirror_upstream_requests_carry_our_user_agent_only(
        start: Start, upstream: tuple[Upstream, str]) -> None:
    fake, _ = upstream
    fake.add("far", "far-1.0-py3-none-any.whl", b"abc")
    url, _app = start()
    page = fetch(url, "/simple/far/", Accept=JSON_TYPE, **{"User-Agent": "pip/99", "X-Token": "secret",
                                                           "Cookie": "session=secret"})
    [entry] = links(page.body)
    assert fetch(url, target(entry), **{"User-Agent": "pip/99", "Cookie": "a=b"}).body == b"abc"
    assert fake.headers
    for sent in fake.headers:
        assert sent["HTTP_USER_AGENT"].startswith("pypi-insiders/")
        assert not {"HTTP_COOKIE", "HTTP_AUTHORIZATION", "HTTP_X_TOKEN"} & set(sent)


# ------------------------------------------------------------------ files


def test_mirror_file_is_fetched_once_then_served_from_disk(
        start: Start, upstream: tuple[Upstream, str]) -> None:
    fake, _ = upstream
    data = bytes(range(256)) * 4000
    sha = fake.add("far", "far-1.0-py3-none-any.whl", data)
    url, app = start()
    path = f"/mirror/far/{sha}/far-1.0-py3-none-any.whl"
    first = fetch(url, path)
    assert (first.status, first.body) == (200, data)
    second = fetch(url, path)
    assert (second.status, second.body) == (200, data)
    assert fake.count("/files/") == 1
    assert [p.name for p in stored_files(app)] == ["far-1.0-py3-none-any.whl"]
    # A client's own X-Sendfile-Type is not nginx's (no trusted_proxy): the bytes, not a name.
    asked = fetch(url, path, **{"X-Sendfile-Type": "X-Accel-Redirect"})
    assert (asked.header("X-Accel-Redirect"), asked.body) == (None, data)


@pytest.mark.parametrize("fault", ["wrong", "cut", "overlong", "hang"])
def test_mirror_bad_upstream_bytes_never_reach_a_client_whole(
        start: Start, upstream: tuple[Upstream, str], caplog: pytest.LogCaptureFixture, fault: str) -> None:
    caplog.set_level(logging.INFO)
    fake, _ = upstream
    data = b"w" * 300_000
    sha = fake.add("far", "far-1.0-py3-none-any.whl", data)
    fake.faults["far-1.0-py3-none-any.whl"] = fault
    url, app = start(timeout=1.0)
    path = f"/mirror/far/{sha}/far-1.0-py3-none-any.whl"
    status, length, got = short_read(url, path)
    assert (status, length) == (200, len(data))
    assert got < len(data)
    assert stored_files(app) == []
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name.startswith("pypi_insiders")]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert errors[0].__dict__["SHA256"] == sha
    # Fixed upstream: the next request fetches again and gets the file.
    fake.faults.clear()
    fake.release.set()
    assert fetch(url, path).body == data
    assert len(stored_files(app)) == 1


def test_mirror_changed_and_deleted_files_follow_the_page(
        start: Start, upstream: tuple[Upstream, str]) -> None:
    fake, _ = upstream
    old = fake.add("far", "far-1.0-py3-none-any.whl", b"old bytes")
    url, _app = start(cache_ttl=0)
    assert fetch(url, f"/mirror/far/{old}/far-1.0-py3-none-any.whl").body == b"old bytes"
    new = fake.add("far", "far-1.0-py3-none-any.whl", b"new bytes")
    assert fetch(url, f"/mirror/far/{new}/far-1.0-py3-none-any.whl").body == b"new bytes"
    assert fetch(url, f"/mirror/far/{old}/far-1.0-py3-none-any.whl").status == 404
    del fake.projects["far"]["far-1.0-py3-none-any.whl"]
    assert fetch(url, f"/mirror/far/{new}/far-1.0-py3-none-any.whl").status == 404


def test_mirror_concurrent_first_requests_make_one_upstream_request(
        start: Start, upstream: tuple[Upstream, str]) -> None:
    fake, _ = upstream
    data = hashlib.sha256(b"seed").digest() * 40_000  # 1.28 MB
    sha = fake.add("far", "far-1.0-py3-none-any.whl", data)
    fake.delay = 0.02
    url, app = start()
    fetch(url, "/simple/far/")
    results: list[bytes] = []

    def client() -> None:
        results.append(fetch(url, f"/mirror/far/{sha}/far-1.0-py3-none-any.whl", ).body)

    threads = [threading.Thread(target=client) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 6
    assert all(body == data for body in results)
    assert fake.count("/files/") == 1
    assert len(stored_files(app)) == 1


def test_mirror_file_not_on_the_page_or_bad_path_is_404(
        start: Start, upstream: tuple[Upstream, str]) -> None:
    sha = upstream[0].add("far", "far-1.0-py3-none-any.whl", b"abc")
    url, _app = start()
    for path in (f"/mirror/far/{'0' * 64}/far-1.0-py3-none-any.whl",
                 f"/mirror/far/{sha}/far-2.0-py3-none-any.whl",
                 f"/mirror/far/{sha}/../../../etc/passwd", f"/mirror/Far/{sha}/far-1.0-py3-none-any.whl",
                 f"/mirror/far/{sha[:10]}/far-1.0-py3-none-any.whl", "/mirror/far/", "/mirror/"):
        assert fetch(url, path).status == 404, path
    assert upstream[0].count("/files/") == 0


# ------------------------------------------------------------------ the dependency-confusion rule


def test_mirror_local_name_never_reaches_upstream_even_with_a_stale_page(
        start: Start, upstream: tuple[Upstream, str], data_dir: Path) -> None:
    fake, _ = upstream
    sha = fake.add("ours", "ours-1.0-py3-none-any.whl", b"public impostor")
    url, app = start()
    assert fetch(url, "/simple/ours/").status == 200  # mirrored while it was not local
    before = len(fake.requests)
    write_pins(StateLayout(data_dir).pinned_projects, ["ours"])
    assert app.fallback.is_local("ours")  # type: ignore[arg-type]
    assert fetch(url, "/simple/ours/").status == 404
    assert fetch(url, "/simple/ours/", Accept=JSON_TYPE).status == 404
    assert fetch(url, f"/mirror/ours/{sha}/ours-1.0-py3-none-any.whl").status == 404
    assert fetch(url, f"/mirror/ours/{sha}/ours-1.0-py3-none-any.whl.metadata").status == 404
    assert len(fake.requests) == before
    assert app.mirror is not None
    assert not app.mirror.layout.page("ours").exists()  # type: ignore[arg-type]


# ------------------------------------------------------------------ cooldown, allow, deny


def test_mirror_cooldown_hides_new_files_everywhere_until_time_passes(
        start: Start, upstream: tuple[Upstream, str]) -> None:
    fake, _ = upstream
    now = time.time()
    old = fake.add("far", "far-1.0-py3-none-any.whl", b"old", uploaded=now - 10 * DAY)
    new = fake.add("far", "far-2.0-py3-none-any.whl", b"new", uploaded=now - 1 * DAY)
    fake.add("fresh", "fresh-1.0-py3-none-any.whl", b"x", uploaded=now - 60)
    url, app = start(cooldown="3 days")
    page = fetch(url, "/simple/far/", Accept=JSON_TYPE)
    assert [f["filename"] for f in links(page.body)] == ["far-1.0-py3-none-any.whl"]
    assert json.loads(page.body)["versions"] == ["1.0"]
    assert b"far-2.0" not in fetch(url, "/simple/far/").body
    assert fetch(url, f"/mirror/far/{new}/far-2.0-py3-none-any.whl").status == 404
    assert fetch(url, f"/mirror/far/{old}/far-1.0-py3-none-any.whl").status == 200
    everything_new = fetch(url, "/simple/fresh/", Accept=JSON_TYPE)
    assert everything_new.status == 200
    assert links(everything_new.body) == []
    # Three days later the file appears, without asking upstream again.
    pages_asked = fake.count("/simple/")
    assert app.mirror is not None
    app.mirror.policy.clock = lambda: now + 3 * DAY
    assert len(links(fetch(url, "/simple/far/", Accept=JSON_TYPE).body)) == 2
    assert fetch(url, f"/mirror/far/{new}/far-2.0-py3-none-any.whl").status == 200
    assert fake.count("/simple/") == pages_asked


def test_mirror_cooldown_exempt_names_are_shown(start: Start, upstream: tuple[Upstream, str]) -> None:
    upstream[0].add("urgent", "urgent-1.0-py3-none-any.whl", b"fix", uploaded=time.time() - 60)
    url, _app = start(cooldown="P7D", cooldown_exempt=["Urgent"])
    assert len(links(fetch(url, "/simple/urgent/", Accept=JSON_TYPE).body)) == 1


def test_mirror_deny_and_allow(start: Start, upstream: tuple[Upstream, str]) -> None:
    fake, _ = upstream
    fake.add("evil", "evil-1.0-py3-none-any.whl", b"x")
    bad = fake.add("mixed", "mixed-1.2-py3-none-any.whl", b"bad")
    fake.add("mixed", "mixed-1.0-py3-none-any.whl", b"good")
    url, _app = start(deny=["evil", "mixed>=1.1,<1.4"])
    assert fetch(url, "/simple/evil/").status == 403
    assert fake.count("/simple/evil") == 0
    page = fetch(url, "/simple/mixed/", Accept=JSON_TYPE)
    assert [f["filename"] for f in links(page.body)] == ["mixed-1.0-py3-none-any.whl"]
    assert fetch(url, f"/mirror/mixed/{bad}/mixed-1.2-py3-none-any.whl").status == 404
    url2, _app2 = start(allow=["mixed"])
    assert fetch(url2, "/simple/evil/").status == 403
    assert fake.count("/simple/evil") == 0
    assert fetch(url2, "/simple/mixed/").status == 200


# ------------------------------------------------------------------ offline, cap, anonymous


def test_mirror_offline_opens_no_connection_and_lists_only_files_on_disk(
        start: Start, upstream: tuple[Upstream, str]) -> None:
    fake, _ = upstream
    kept = fake.add("far", "far-1.0-py3-none-any.whl", b"kept")
    not_kept = fake.add("far", "far-2.0-py3-none-any.whl", b"never fetched")
    url, _app = start()
    assert fetch(url, f"/mirror/far/{kept}/far-1.0-py3-none-any.whl").status == 200
    before = len(fake.requests)
    url2, app2 = start(offline=True)

    def no_network(*_args: object, **_kwargs: object) -> None:
        pytest.fail("offline mode opened a connection")

    app2.fallback.client.get = no_network  # type: ignore[method-assign,assignment]
    app2.fallback.client.stream = no_network  # type: ignore[method-assign,assignment]
    page = fetch(url2, "/simple/far/", Accept=JSON_TYPE)
    assert [f["filename"] for f in links(page.body)] == ["far-1.0-py3-none-any.whl"]
    assert fetch(url2, f"/mirror/far/{kept}/far-1.0-py3-none-any.whl").body == b"kept"
    assert fetch(url2, "/simple/unknown/").status == 404
    assert fetch(url2, f"/mirror/far/{not_kept}/far-2.0-py3-none-any.whl").status == 404
    assert len(fake.requests) == before


def test_mirror_max_size_evicts_least_recently_used(start: Start, upstream: tuple[Upstream, str]) -> None:
    fake, _ = upstream
    shas = [fake.add("far", f"far-1.{n}-py3-none-any.whl", bytes([n]) * 4000) for n in range(4)]
    url, app = start(max_size=10_000)
    for number, sha in enumerate(shas):
        assert fetch(url, f"/mirror/far/{sha}/far-1.{number}-py3-none-any.whl").status == 200
        time.sleep(0.02)
    names = [p.name for p in stored_files(app)]
    assert "far-1.3-py3-none-any.whl" in names
    assert "far-1.0-py3-none-any.whl" not in names
    assert sum(p.stat().st_size for p in stored_files(app)) <= 9000


def test_mirror_anonymous_redirect_and_none(start: Start, upstream: tuple[Upstream, str]) -> None:
    sha = upstream[0].add("far", "far-1.0-py3-none-any.whl", b"abc")
    url, _app = start(anonymous="redirect")
    answer = fetch(url, "/simple/far/")
    assert answer.status == 302
    assert answer.header("Location") == upstream[1] + "simple/far/"
    url2, _app2 = start(anonymous="none")
    assert fetch(url2, "/simple/far/").status == 401
    assert fetch(url2, f"/mirror/far/{sha}/far-1.0-py3-none-any.whl").status == 401
    assert upstream[0].count("/files/") == 0


def test_mirror_metadata_is_verified_and_served(
        start: Start, upstream: tuple[Upstream, str], tmp_path: Path) -> None:
    fake, _ = upstream
    wheel = make_wheel(tmp_path, "far", "1.0")
    fake.add("far", wheel.name, wheel.read_bytes())
    fake.metadata[wheel.name] = b"Metadata-Version: 2.1\nName: far\nVersion: 1.0\n\n"
    fake.add("bad", "bad-1.0-py3-none-any.whl", b"x")
    fake.metadata["bad-1.0-py3-none-any.whl"] = b"Name: bad\n"
    fake.faults["bad-1.0-py3-none-any.whl.metadata"] = "wrong"
    url, app = start()
    [entry] = links(fetch(url, "/simple/far/", Accept=JSON_TYPE).body)
    assert entry["core-metadata"] == {"sha256": hashlib.sha256(fake.metadata[wheel.name]).hexdigest()}
    assert 'data-core-metadata="sha256=' in fetch(url, "/simple/far/").body.decode()
    path = target(entry) + ".metadata"
    assert fetch(url, path).body == fake.metadata[wheel.name]
    assert fetch(url, path).body == fake.metadata[wheel.name]
    assert fake.count("/files/far/") == 1
    [bad] = links(fetch(url, "/simple/bad/", Accept=JSON_TYPE).body)
    assert fetch(url, target(bad) + ".metadata").status == 502
    assert not [p for p in stored_files(app) if p.name.startswith("bad")]


def test_mirror_below_min_free_serves_verified_bytes_without_storing(
        start: Start, upstream: tuple[Upstream, str], caplog: pytest.LogCaptureFixture) -> None:
    data = b"p" * 200_000
    sha = upstream[0].add("far", "far-1.0-py3-none-any.whl", data)
    url, app = start(min_free="1000 TiB")
    assert fetch(url, f"/mirror/far/{sha}/far-1.0-py3-none-any.whl").body == data
    assert stored_files(app) == []
    assert app.mirror is not None
    assert list(app.mirror.layout.tmp.iterdir()) == []
    [warning] = [r for r in caplog.records
                 if r.levelno == logging.WARNING and "without storing" in r.getMessage()]
    assert warning.__dict__["RESULT"] == "passthrough"


def test_mirror_a_dead_leaders_part_file_is_removed_at_start(
        start: Start, upstream: tuple[Upstream, str]) -> None:
    sha = upstream[0].add("far", "far-1.0-py3-none-any.whl", b"whole")
    _url, app = start()
    assert app.mirror is not None
    part = app.mirror.layout.part(sha)
    part.write_bytes(b"who")
    url2, _app2 = start()
    assert not part.exists()
    assert fetch(url2, f"/mirror/far/{sha}/far-1.0-py3-none-any.whl").body == b"whole"


def test_mirror_kill_9_mid_download_leaves_nothing_that_is_served(
        make_config: ConfigMaker, data_dir: Path, tmp_path: Path, upstream: tuple[Upstream, str]) -> None:
    fake, upstream_url = upstream
    data = hashlib.sha256(b"k").digest() * 64 * 1024  # 2 MiB, in 32 slow chunks
    sha = fake.add("far", "far-1.0-py3-none-any.whl", data)
    fake.delay = 0.1
    write_index(data_dir / "index", {})
    config_file = make_config(server={"listen": "127.0.0.1:0", "processes": 1},
                              upstream={"url": upstream_url + "simple/", "fallback": "mirror", "min_free": 0})
    path = f"/mirror/far/{sha}/far-1.0-py3-none-any.whl"
    layout = tmp_path / "cache" / "mirror"
    with serve_process(config_file) as running:
        cut: list[int] = []

        def download() -> None:
            try:
                cut.append(short_read(running.url, path)[2])
            except (OSError, http.client.HTTPException):
                cut.append(0)  # the connection was reset before any byte

        thread = threading.Thread(target=download)
        thread.start()
        assert wait_for(lambda: (layout / "tmp" / f"{sha}.part").exists()
                        and (layout / "tmp" / f"{sha}.part").stat().st_size > 0)
        running.process.send_signal(signal.SIGKILL)
        running.process.wait(10)
        thread.join(15)
    assert cut
    assert cut[0] < len(data)
    assert not list((layout / "files").rglob("*.whl"))
    fake.delay = 0.0
    with serve_process(config_file) as running:
        assert request(running.url, path).body == data
    assert [p.name for p in (layout / "files").rglob("*.whl")] == ["far-1.0-py3-none-any.whl"]
    assert not list((layout / "tmp").iterdir())


def mirror_status(url: str) -> dict[str, Any]:
    """`/status.json`'s mirror section; empty until the parent's thread wrote one."""
    reply = fetch(url, "/status.json")
    section: dict[str, Any] = json.loads(reply.body).get("mirror") or {} if reply.status == 200 else {}
    return section


def test_mirror_status_section_counts_hits_misses_and_stale_pages(
        start: Start, upstream: tuple[Upstream, str], tmp_path: Path) -> None:
    """HTML and JSON both, from the snapshot the parent's thread (`refreshing`) writes."""
    fake, _ = upstream
    sha = fake.add("far", "far-1.0-py3-none-any.whl", b"z" * 1000)
    url, _app = start(cache_ttl=0, max_size="1 MiB")
    path = f"/mirror/far/{sha}/far-1.0-py3-none-any.whl"
    with refreshing(config.load(str(tmp_path / "config.toml"))):
        assert fetch(url, path).status == 200  # a miss
        assert fetch(url, path).status == 200  # a hit
        fake.faults["page:far"] = "500"
        fetch(url, "/simple/far/")
        assert wait_for(lambda: mirror_status(url).get("stale_pages_served", 0) >= 1)
        mirror = mirror_status(url)
        assert mirror["bytes_used"] == 1000
        assert mirror["files"] == 1
        assert mirror["max_size"] == 1024 * 1024
        assert (mirror["hits"], mirror["misses"], mirror["bytes_from_upstream"]) == (1, 1, 1000)
        assert "answered 500" in mirror["last_upstream_error"]
        assert mirror["last_upstream_error_at"].endswith("Z")
        assert mirror["offline"] is False
        assert mirror["min_free"] == 0
        assert mirror["free_disk"] > 0
        page = fetch(url, "/status").body.decode()
        assert "<h1>Mirror</h1>" in page
        for row in ("<th>used</th><td>1000 bytes of 1.0 MiB</td>", "<th>files</th><td>1</td>",
                    "<th>hits</th><td>1</td>", "<th>misses</th><td>1</td>",
                    "<th>from upstream</th><td>1000 bytes</td>", "<th>offline</th><td>no</td>"):
            assert row in page
        error = r'<th>last upstream error</th><td class="problem">[-0-9T:]+Z: [^<]*answered 500'
        assert re.search(error, page)
        # Another process on the same mirror (a worker of [server] processes) adds to the same counts.
        other, _app = start(cache_ttl=0, max_size="1 MiB")
        fetch(other, path)
        assert wait_for(lambda: mirror_status(url).get("hits") == 2)


def test_mirror_status_never_shows_upstreams_credentials(
        start: Start, upstream: tuple[Upstream, str], tmp_path: Path) -> None:
    fake, upstream_url = upstream
    fake.add("far", "far-1.0-py3-none-any.whl", b"far")
    sha = fake.add("near", "near-1.0-py3-none-any.whl", b"near")
    fake.faults["page:far"] = "500"
    fake.faults["near-1.0-py3-none-any.whl"] = "500"
    secret_url = upstream_url.replace("http://", "http://mirror-user:s3cret-pass@") + "simple/"
    url, _app = start(url=secret_url)
    with refreshing(config.load(str(tmp_path / "config.toml"))):
        assert fetch(url, "/simple/far/").status >= 500
        assert wait_for(lambda: "answered 500" in (mirror_status(url).get("last_upstream_error") or ""))
        assert fetch(url, f"/mirror/near/{sha}/near-1.0-py3-none-any.whl").status >= 500
        assert wait_for(lambda: "near-1.0" in (mirror_status(url).get("last_upstream_error") or ""))
        shown = [fetch(url, "/status.json").body, fetch(url, "/status").body]
    assert any(h.get("HTTP_AUTHORIZATION") for h in fake.headers)  # the credentials were in use
    for body in shown:
        assert b"s3cret-pass" not in body
        assert b"mirror-user" not in body
        assert b"near-1.0-py3-none-any.whl answered 5" in body


def test_mirror_status_requests_scan_nothing_and_ask_upstream_nothing(
        make_config: ConfigMaker, data_dir: Path, tmp_path: Path, upstream: tuple[Upstream, str]) -> None:
    """The real service: its parent scans the mirror's disk; two hundred requests to /status and
    /status.json later, the kernel saw no walk of the tree and upstream no request."""
    fake, upstream_url = upstream
    sha = fake.add("far", "far-1.0-py3-none-any.whl", b"f" * 2000)
    write_index(data_dir / "index", {})
    config_file = make_config(server={"listen": "127.0.0.1:0", "processes": 1},
                              upstream={"url": upstream_url + "simple/", "fallback": "mirror", "min_free": 0})
    path = f"/mirror/far/{sha}/far-1.0-py3-none-any.whl"
    with serve_process(config_file) as running:
        assert fetch(running.url, path).status == 200
        assert fetch(running.url, path).status == 200
        assert wait_for(lambda: mirror_status(running.url).get("misses") == 1)
        assert wait_for(lambda: mirror_status(running.url).get("hits") == 1)
        assert mirror_status(running.url)["bytes_used"] == 2000
        asked = len(fake.requests)
        began = time.monotonic()
        with DirectoryOpens(tmp_path / "cache" / "mirror" / "files") as opens:
            for number in range(200):
                assert fetch(running.url, "/status.json" if number % 2 else "/status").status == 200
            scans = opens.count()
        elapsed = time.monotonic() - began
    assert scans <= 1 + elapsed // status_refresh.MAX_AGE, (scans, elapsed)  # the parent's own, if due
    assert len(fake.requests) == asked


# ------------------------------------------------------------------ any path


SEGMENT = st.one_of(
    st.sampled_from(["far", "Far", "..", ".", "", "%2e%2e", "far-1.0-py3-none-any.whl", ".metadata",
                     "far-1.0-py3-none-any.whl.metadata", "a" * 64, "0" * 64, "%00", "~", "far.json"]),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e, blacklist_characters="?#"),
            max_size=70),
)


def test_mirror_route_any_path_gives_no_5xx_and_reads_nothing_outside_its_files(
        start: Start, upstream: tuple[Upstream, str], tmp_path: Path) -> None:
    fake, _ = upstream
    sha = fake.add("far", "far-1.0-py3-none-any.whl", b"the real file")
    url, app = start()
    assert fetch(url, f"/mirror/far/{sha}/far-1.0-py3-none-any.whl").status == 200
    assert app.mirror is not None
    secret = b"SECRET-OUTSIDE-THE-MIRROR-FILES"
    (app.mirror.layout.root / "far.json").write_bytes(secret)
    (app.mirror.layout.pages / "far-1.0-py3-none-any.whl").write_bytes(secret)
    (tmp_path / "cache" / "secret.whl").write_bytes(secret)
    upstream_before = fake.count("/files/")

    @settings(max_examples=200, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(st.lists(SEGMENT, min_size=1, max_size=5), st.sampled_from(["", "/"]))
    def check(segments: list[str], tail: str) -> None:
        path = "/mirror/" + "/".join(segments) + tail
        answer = fetch(url, path)
        assert answer.status < 500, (path, answer)
        assert secret not in answer.body
        if answer.status == 200:
            assert answer.body == b"the real file"

    check()
    assert fake.count("/files/") == upstream_before
    asked = [r.removeprefix("/simple/").rstrip("/") for r in fake.requests if r.startswith("/simple/")]
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name) for name in asked), asked


def test_mirror_head_of_a_miss_answers_from_the_page_without_downloading(
        start: Start, upstream: tuple[Upstream, str]) -> None:
    sha = upstream[0].add("far", "far-1.0-py3-none-any.whl", b"h" * 777)
    url, app = start()
    answer = request(url, f"/mirror/far/{sha}/far-1.0-py3-none-any.whl", "HEAD")
    assert (answer.status, answer.header("Content-Length"), answer.body) == (200, "777", b"")
    assert upstream[0].count("/files/") == 0
    assert stored_files(app) == []


def test_mirror_yanks_pass_through_and_yanked_files_still_download(
        start: Start, upstream: tuple[Upstream, str]) -> None:
    fake, _ = upstream
    sha = fake.add("far", "far-1.0-py3-none-any.whl", b"y")
    fake.yanked["far-1.0-py3-none-any.whl"] = "broken build"
    url, _app = start()
    [entry] = links(fetch(url, "/simple/far/", Accept=JSON_TYPE).body)
    assert entry["yanked"] == "broken build"
    assert 'data-yanked="broken build"' in fetch(url, "/simple/far/").body.decode()
    assert fetch(url, f"/mirror/far/{sha}/far-1.0-py3-none-any.whl").body == b"y"


def test_mirror_upstream_credentials_go_to_upstream_only_and_never_into_pages(
        start: Start, upstream: tuple[Upstream, str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake, upstream_url = upstream
    sha = fake.add("far", "far-1.0-py3-none-any.whl", b"c")
    url, _app = start(url=upstream_url.replace("http://", "http://mirror-user:s3cret-pw@") + "simple/")
    page = fetch(url, "/simple/far/").body + fetch(url, "/simple/far/", Accept=JSON_TYPE).body
    assert b"s3cret" not in page
    assert b"mirror-user" not in page
    assert fetch(url, f"/mirror/far/{sha}/far-1.0-py3-none-any.whl").body == b"c"
    expected = "Basic " + base64.b64encode(b"mirror-user:s3cret-pw").decode()
    assert [sent.get("HTTP_AUTHORIZATION") for sent in fake.headers] == [expected, expected]
    assert "s3cret" not in caplog.text


def test_mirror_an_upstream_without_sizes_or_upload_times(start: Start) -> None:
    """FakeUpstream gives hashes only: files are verified whole before they are served, and the
    cooldown hides them unless cooldown_unknown = "show"."""
    data = b"no size announced" * 1000
    fake = FakeUpstream(projects={"bare": {"bare-1.0-py3-none-any.whl": data}})
    with ThreadedServer(fake.app) as bare:
        url, app = start(url=bare.url + "simple/")
        page = json.loads(fetch(url, "/simple/bare/", Accept=JSON_TYPE).body)
        assert page["meta"]["api-version"] == "1.0"
        assert "versions" not in page
        [entry] = page["files"]
        assert "upload-time" not in entry
        assert "size" not in entry
        assert fetch(url, target(entry)).body == data
        assert len(stored_files(app)) == 1
        hidden, _app = start(url=bare.url + "simple/", cooldown="1 day")
        assert json.loads(fetch(hidden, "/simple/bare/", Accept=JSON_TYPE).body)["files"] == []
        assert fetch(hidden, target(entry)).status == 404
        shown, _app = start(url=bare.url + "simple/", cooldown="1 day", cooldown_unknown="show")
        assert len(json.loads(fetch(shown, "/simple/bare/", Accept=JSON_TYPE).body)["files"]) == 1


@pytest.mark.parametrize("fault", [None, "wrong", "cut"])
def test_mirror_without_any_size_a_file_is_verified_whole_before_it_is_served(
        start: Start, upstream: tuple[Upstream, str], fault: str | None) -> None:
    fake, _ = upstream
    fake.sizes = False
    data = b"s" * 300_000
    sha = fake.add("far", "far-1.0-py3-none-any.whl", data)
    if fault:
        fake.faults["far-1.0-py3-none-any.whl"] = fault
    url, app = start()
    answer = fetch(url, f"/mirror/far/{sha}/far-1.0-py3-none-any.whl")
    if fault is None:
        assert (answer.status, answer.body) == (200, data)
        assert len(stored_files(app)) == 1
    else:
        assert answer.status == 502
        assert stored_files(app) == []


def test_mirror_a_client_gone_before_the_first_byte_releases_the_file(
        start: Start, upstream: tuple[Upstream, str]) -> None:
    sha = upstream[0].add("far", "far-1.0-py3-none-any.whl", b"g" * 100_000)
    _url, app = start()
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": f"/mirror/far/{sha}/far-1.0-py3-none-any.whl",
               "QUERY_STRING": "", "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http",
               "SERVER_NAME": "x", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1"}
    statuses: list[str] = []
    body = app(environ, lambda status, _headers: statuses.append(status))
    assert statuses == ["200 OK"]
    body.close()  # type: ignore[attr-defined]  # what waitress does when the client is gone
    assert app.mirror is not None
    with exclusive_lock(app.mirror.layout.lock(sha), wait=False):
        pass


def test_mirror_a_failed_leader_gives_every_follower_a_short_body(
        start: Start, upstream: tuple[Upstream, str]) -> None:
    fake, _ = upstream
    data = hashlib.sha256(b"f").digest() * 20_000  # 640 kB in 10 slow chunks
    sha = fake.add("far", "far-1.0-py3-none-any.whl", data)
    fake.faults["far-1.0-py3-none-any.whl"] = "wrong"
    fake.delay = 0.1  # one second in all: every client arrives while the leader still streams
    url, app = start()
    fetch(url, "/simple/far/")
    results: list[tuple[int, int, int]] = []
    threads = [threading.Thread(target=lambda: results.append(
        short_read(url, f"/mirror/far/{sha}/far-1.0-py3-none-any.whl"))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 4
    assert all(status == 200 and got < len(data) for status, _length, got in results), results
    assert fake.count("/files/") == 1
    assert stored_files(app) == []


def test_mirror_public_projects_go_upstream_only_for_callers_who_may_not_read_them(
        make_config: ConfigMaker, data_dir: Path, upstream: tuple[Upstream, str]) -> None:
    fake, upstream_url = upstream
    sha = fake.add("ours", "ours-9.0-py3-none-any.whl", b"upstream's release")
    fake.add("private", "private-1.0-py3-none-any.whl", b"impostor")
    write_index(data_dir / "index", {})
    write_pins(StateLayout(data_dir).pinned_projects, ["ours", "private"])
    loaded = config.load(str(make_config(
        upstream={"url": upstream_url + "simple/", "fallback": "mirror", "min_free": 0,
                  "anonymous": "mirror"},
        access={"anonymous": "none", "public_projects": ["ours"]})))
    with ThreadedServer(make_app(loaded)) as server:
        page = fetch(server.url, "/simple/ours/", Accept=JSON_TYPE)
        assert page.status == 200
        assert "Authorization" in (page.header("Vary") or "")
        [entry] = links(page.body)
        assert fetch(server.url, target(entry)).body == b"upstream's release"
        assert entry["url"].startswith(f"../../mirror/ours/{sha}/")
        assert fetch(server.url, "/simple/private/").status == 401
        missing = "/mirror/private/" + "0" * 64 + "/private-1.0-py3-none-any.whl"
        assert fetch(server.url, missing).status == 404
    assert fake.count("/simple/private") == 0


def test_mirror_a_silent_upstream_costs_one_timeout_then_502s_at_once(
        start: Start, upstream: tuple[Upstream, str]) -> None:
    fake, _ = upstream
    first = fake.add("far", "far-1.0-py3-none-any.whl", b"1")
    second = fake.add("far", "far-2.0-py3-none-any.whl", b"2")
    fake.faults |= {"far-1.0-py3-none-any.whl": "silent", "far-2.0-py3-none-any.whl": "silent"}
    url, _app = start(timeout=1.0)
    fetch(url, "/simple/far/")
    began = time.monotonic()
    answer = fetch(url, f"/mirror/far/{first}/far-1.0-py3-none-any.whl")
    assert (answer.status, answer.header("Retry-After")) == (502, "5")
    assert b"timed out" in answer.body
    assert 0.9 < time.monotonic() - began < 3
    began = time.monotonic()
    assert fetch(url, f"/mirror/far/{second}/far-2.0-py3-none-any.whl").status == 502
    assert time.monotonic() - began < 0.5
    assert fake.count("/files/") == 1


def test_mirror_a_write_failing_mid_file_passes_the_verified_bytes_through_unstored(
        make_config: ConfigMaker, data_dir: Path, tmp_path: Path, upstream: tuple[Upstream, str]) -> None:
    """The disk refuses more bytes half way (a file size limit on the running service, set
    with prlimit: the same path as ENOSPC): the client still gets every byte, verified."""
    fake, upstream_url = upstream
    data = hashlib.sha256(b"w").digest() * 20_000  # 640 kB
    sha = fake.add("far", "far-1.0-py3-none-any.whl", data)
    write_index(data_dir / "index", {})
    config_file = make_config(server={"listen": "127.0.0.1:0", "processes": 1},
                              upstream={"url": upstream_url + "simple/", "fallback": "mirror", "min_free": 0})
    with serve_process(config_file) as running:
        assert request(running.url, "/simple/far/").status == 200  # the page is written first
        subprocess.run(["prlimit", "--pid", str(running.process.pid), "--fsize=300000"], check=True,
                       timeout=30)
        assert request(running.url, f"/mirror/far/{sha}/far-1.0-py3-none-any.whl").body == data
        assert "stopped storing far-1.0-py3-none-any.whl" in running.output()
    assert not list((tmp_path / "cache" / "mirror" / "files").rglob("*.whl"))
    assert not list((tmp_path / "cache" / "mirror" / "tmp").iterdir())


def test_mirror_reads_an_html_only_upstream(start: Start) -> None:
    sha, meta = "a" * 64, "b" * 64
    html = (f'<!DOCTYPE html><html><body>'
            f'<a href="../../files/h-1.0-py3-none-any.whl#sha256={sha}" data-requires-python="&gt;=3.9" '
            f'data-yanked="" data-core-metadata="sha256={meta}" data-upload-time="2024-01-02T03:04:05Z">x</a>'
            f'<a href="../../files/h-2.0.tar.gz#md5=00">no sha256: dropped</a>'
            f'<a href="ftp://elsewhere/h-3.0.tar.gz#sha256={sha}">not http: dropped</a>'
            f'<a href="../../files/notes.txt#sha256={sha}">not a distribution: dropped</a>'
            f"</body></html>").encode()
    with RawServer(lambda _head: reply("200 OK", html)) as raw:
        url, _app = start(url=raw.url + "simple/")
        [entry] = links(fetch(url, "/simple/h/", Accept=JSON_TYPE).body)
    assert entry["filename"] == "h-1.0-py3-none-any.whl"
    assert entry["requires-python"] == ">=3.9"
    assert entry["yanked"] is True
    assert entry["core-metadata"] == {"sha256": meta}
    assert entry["upload-time"] == "2024-01-02T03:04:05.000000Z"
    assert entry["url"] == f"../../mirror/h/{sha}/h-1.0-py3-none-any.whl#sha256={sha}"


def test_mirror_a_name_on_its_way_to_local_never_reaches_upstream(
        start: Start, upstream: tuple[Upstream, str], data_dir: Path) -> None:
    """Files in the store, or a page half written: local already, before any pin."""
    fake, _ = upstream
    fake.add("arriving", "arriving-1.0-py3-none-any.whl", b"impostor")
    fake.add("halfway", "halfway-1.0-py3-none-any.whl", b"impostor")
    (data_dir / "store" / "arriving").mkdir(parents=True)
    (data_dir / "index" / "simple" / "halfway").mkdir(parents=True)
    url, _app = start()
    assert fetch(url, "/simple/arriving/").status == 404
    assert fetch(url, "/simple/halfway/").status == 404
    assert fake.requests == []


def test_mirror_page_answers_304_to_its_own_etag(start: Start, upstream: tuple[Upstream, str]) -> None:
    sha = upstream[0].add("far", "far-1.0-py3-none-any.whl", b"e")
    url, _app = start()
    first = fetch(url, "/simple/far/")
    etag = first.header("ETag")
    assert etag
    again = fetch(url, "/simple/far/", **{"If-None-Match": etag})
    assert (again.status, again.body) == (304, b"")
    assert fetch(url, "/simple/far/", **{"If-None-Match": etag, "Accept": JSON_TYPE}).status == 200
    path = f"/mirror/far/{sha}/far-1.0-py3-none-any.whl"
    assert fetch(url, path, **{"If-None-Match": f'"{sha}"'}).status == 304
    assert upstream[0].count("/files/") == 0
