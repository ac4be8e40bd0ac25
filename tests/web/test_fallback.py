"""The fallback for names we do not hold: redirect, proxy (cache, stale copy, 502), off, and the
dependency-confusion guard (local and pinned names never reach upstream), against a second real
loopback server playing upstream.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pypi_insiders import config
from pypi_insiders.state_layout import StateLayout
from pypi_insiders.web.app import IndexApp, make_app
from pypi_insiders.web.relay import absolute_html
from tests.conftest import ConfigMaker
from tests.support.server_fixtures import JSON_TYPE, FakeUpstream, Reply, ThreadedServer, request, write_index

AppMaker = Callable[..., tuple[IndexApp, str]]


@pytest.fixture
def upstream() -> Iterator[tuple[FakeUpstream, ThreadedServer]]:
    fake = FakeUpstream(projects={"remote-only": {"remote_only-1.0-py3-none-any.whl": b"wheel bytes"},
                                  "shared-name": {"shared_name-99.0-py3-none-any.whl": b"public"}})
    with ThreadedServer(fake.app) as server:
        yield fake, server


@pytest.fixture
def index(make_config: ConfigMaker, data_dir: Path,
          upstream: tuple[FakeUpstream, ThreadedServer]) -> Iterator[AppMaker]:
    """Our app with `shared-name` held locally; `make(fallback=..., **upstream_keys)` starts it."""
    (data_dir / "store" / "shared-name").mkdir(parents=True)
    write_index(data_dir / "index", {"shared-name": ["shared-name/shared_name-1.0-py3-none-any.whl"]})
    servers: list[ThreadedServer] = []

    def make(fallback: str, **keys: Any) -> tuple[IndexApp, str]:
        table = {"url": upstream[1].url + "simple/", "fallback": fallback, "timeout": 2.0, **keys}
        app = make_app(config.load(str(make_config(upstream=table))))
        servers.append(ThreadedServer(app).__enter__())
        return app, servers[-1].url

    yield make
    for server in servers:
        server.stop()


def get(url: str, path: str, accept: str = "") -> Reply:
    return request(url, path, headers={"Accept": accept} if accept else {})


def test_upstream_redirect_sends_unknown_names_upstream(index: AppMaker, upstream: Any) -> None:
    _app, url = index("redirect")
    reply = get(url, "/simple/remote-only/")
    assert reply.status == 302
    assert reply.header("Location") == upstream[1].url + "simple/remote-only/"
    assert upstream[0].count("/") == 0  # a redirect does not fetch anything itself


def test_upstream_redirect_keeps_the_query(index: AppMaker, upstream: Any) -> None:
    _app, url = index("redirect")
    reply = get(url, "/simple/remote-only/?format=text/html")
    assert reply.header("Location") == upstream[1].url + "simple/remote-only/?format=text/html"


@pytest.mark.parametrize("fallback", ["redirect", "proxy", "off"])
def test_upstream_never_consulted_for_a_local_name(index: AppMaker, upstream: Any, fallback: str) -> None:
    _app, url = index(fallback)
    for accept in ("", JSON_TYPE):
        reply = get(url, "/simple/shared-name/", accept)
        assert reply.status == 200
        assert b"shared_name-1.0" in reply.body
        assert b"99.0" not in reply.body
    assert get(url, "/simple/Shared_Name/").status == 301
    assert upstream[0].count("/") == 0


@pytest.mark.parametrize("fallback", ["redirect", "proxy"])
def test_upstream_pinned_name_without_files_is_404(index: AppMaker, upstream: Any, data_dir: Path,
                                                   fallback: str) -> None:
    StateLayout(data_dir).pinned_projects.write_text("shared-name\nremote-only\n")
    _app, url = index(fallback)
    reply = get(url, "/simple/remote-only/")
    assert reply.status == 404
    assert reply.body == b"project has no files here (pinned to local)\n"
    assert get(url, "/simple/Remote.Only/").status == 301
    assert upstream[0].count("/") == 0


def test_upstream_pinned_list_is_reread_when_it_changes(index: AppMaker, upstream: Any,
                                                         data_dir: Path) -> None:
    _app, url = index("redirect")
    assert get(url, "/simple/remote-only/").status == 302
    StateLayout(data_dir).pinned_projects.write_text("remote-only\n")
    assert get(url, "/simple/remote-only/").status == 404


def test_upstream_store_directory_counts_as_local(index: AppMaker, upstream: Any, data_dir: Path) -> None:
    """Between an upload landing and its page being generated, the name is already ours."""
    (data_dir / "store" / "remote-only").mkdir()
    _app, url = index("proxy")
    assert get(url, "/simple/remote-only/").status == 404
    assert upstream[0].count("/") == 0


def test_upstream_off_is_404(index: AppMaker, upstream: Any) -> None:
    _app, url = index("off")
    reply = get(url, "/simple/remote-only/")
    assert reply.status == 404
    assert b"fallback is off" in reply.body
    assert upstream[0].count("/") == 0


def test_upstream_proxy_relays_html_with_absolute_urls(index: AppMaker, upstream: Any) -> None:
    _app, url = index("proxy")
    reply = get(url, "/simple/remote-only/")
    assert reply.status == 200
    assert reply.header("Content-Type") == "text/html; charset=utf-8"
    expected = upstream[1].url + "files/remote-only/remote_only-1.0-py3-none-any.whl#sha256="
    assert expected.encode() in reply.body
    assert b'data-requires-python="&gt;=3"' in reply.body


def test_upstream_proxy_relays_json_when_negotiated(index: AppMaker, upstream: Any) -> None:
    _app, url = index("proxy")
    reply = get(url, "/simple/remote-only/", JSON_TYPE)
    assert reply.status == 200
    assert reply.header("Content-Type") == JSON_TYPE
    page = json.loads(reply.body)
    assert page["files"][0]["url"] == upstream[1].url + "files/remote-only/remote_only-1.0-py3-none-any.whl"
    assert page["files"][0]["requires-python"] == ">=3"
    assert len(page["files"][0]["hashes"]["sha256"]) == 64


def test_upstream_proxy_caches_pages(index: AppMaker, upstream: Any) -> None:
    _app, url = index("proxy", cache_ttl=600.0)
    first = get(url, "/simple/remote-only/")
    for _ in range(5):
        assert get(url, "/simple/remote-only/").body == first.body
    assert upstream[0].count("/simple/remote-only/") == 1
    assert get(url, "/simple/remote-only/", JSON_TYPE).status == 200
    assert upstream[0].count("/simple/remote-only/") == 2  # the other format is another page
    assert request(url, "/simple/remote-only/", headers={"If-None-Match": first.header("ETag") or ""}
                   ).status == 304


def test_upstream_proxy_refetches_after_the_ttl(index: AppMaker, upstream: Any) -> None:
    _app, url = index("proxy", cache_ttl=0.0)
    get(url, "/simple/remote-only/")
    get(url, "/simple/remote-only/")
    assert upstream[0].count("/simple/remote-only/") == 2


def test_upstream_proxy_404_upstream_is_404(index: AppMaker, upstream: Any) -> None:
    _app, url = index("proxy")
    assert get(url, "/simple/nowhere-at-all/").status == 404
    assert upstream[0].count("/simple/nowhere-at-all/") == 1


def test_upstream_proxy_serves_the_stale_copy_when_upstream_is_down(index: AppMaker, upstream: Any) -> None:
    _app, url = index("proxy", cache_ttl=0.0)
    fresh = get(url, "/simple/remote-only/")
    upstream[1].stop()
    stale = get(url, "/simple/remote-only/")
    assert stale.status == 200
    assert stale.body == fresh.body


def test_upstream_proxy_without_a_copy_is_502_when_upstream_is_down(index: AppMaker, upstream: Any) -> None:
    _app, url = index("proxy")
    upstream[1].stop()
    reply = get(url, "/simple/remote-only/")
    assert reply.status == 502
    assert reply.body.startswith(b"upstream index failed")


def test_upstream_proxy_gives_up_after_the_timeout(index: AppMaker, upstream: Any) -> None:
    _app, url = index("proxy", timeout=0.5)
    upstream[0].hold = hold = threading.Event()  # upstream answers only once we have our reply
    try:
        reply = get(url, "/simple/remote-only/")
        assert not hold.is_set()
    finally:
        hold.set()
    assert reply.status == 502  # had the timeout not fired, the released upstream's 200 would be here


def test_upstream_without_url_behaves_as_off(index: AppMaker) -> None:
    app, url = index("proxy")
    app.reconfigure(replace(app.config, upstream=replace(app.config.upstream, url=None)))
    reply = get(url, "/simple/remote-only/")
    assert reply.status == 404
    assert b"no upstream index configured" in reply.body


def test_upstream_fallback_changes_live_on_reconfigure(index: AppMaker, upstream: Any) -> None:
    app, url = index("off")
    assert get(url, "/simple/remote-only/").status == 404
    app.reconfigure(replace(app.config, upstream=replace(app.config.upstream, fallback="redirect")))
    assert get(url, "/simple/remote-only/").status == 302


def test_upstream_redirect_never_leaks_upstream_credentials(index: AppMaker, upstream: Any) -> None:
    app, url = index("redirect")
    secret = upstream[1].url.replace("http://", "http://user:s3cret@") + "simple/"
    app.reconfigure(replace(app.config, upstream=replace(app.config.upstream, url=secret)))
    reply = get(url, "/simple/remote-only/")
    assert reply.status == 302
    assert b"s3cret" not in reply.body
    assert "s3cret" not in (reply.header("Location") or "")


def test_upstream_absolute_html_keeps_every_attribute() -> None:
    page = ('<!DOCTYPE html><html><head><base href="/other/"><meta name="pypi:repository-version" '
            'content="1.1"></head><body><a href="f-1.0.tar.gz#sha256=ab" data-requires-python="&gt;=3.8"'
            ' data-yanked="" data-core-metadata="sha256=cd">f &amp; 1.0</a></body></html>')
    out = absolute_html(page, "https://up.example/simple/f/")
    assert '<a href="https://up.example/other/f-1.0.tar.gz#sha256=ab"' in out
    assert 'data-requires-python="&gt;=3.8"' in out
    assert 'data-yanked=""' in out
    assert 'data-core-metadata="sha256=cd"' in out
    assert "f &amp; 1.0" in out
    assert '<meta name="pypi:repository-version" content="1.1">' in out
    assert "<base" not in out


def test_upstream_proxy_does_not_queue_clients_behind_a_hanging_upstream(index: AppMaker,
                                                                         upstream: Any) -> None:
    _app, url = index("proxy", timeout=0.5)
    upstream[0].hold = hold = threading.Event()
    replies: list[int] = []

    def fetch() -> None:
        replies.append(get(url, "/simple/remote-only/").status)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=8)  # before the held upstream would be released on its own
        assert replies == [502] * 4  # all answered while upstream still held its one answer
    finally:
        hold.set()
    assert upstream[0].count("/simple/remote-only/") == 1  # one upstream request, not one per client


def test_upstream_half_generated_project_counts_as_local(index: AppMaker, upstream: Any,
                                                         data_dir: Path) -> None:
    """Only the HTML page written so far: a JSON client must not be sent upstream meanwhile."""
    page = data_dir / "index" / "simple" / "remote-only"
    page.mkdir()
    (page / "index.html").write_text("<a href='x'>x</a>")
    _app, url = index("proxy")
    assert get(url, "/simple/remote-only/").status == 200
    assert get(url, "/simple/remote-only/", JSON_TYPE).status == 404
    assert upstream[0].count("/") == 0
