"""The WSGI app over real HTTP: routes, negotiation, caching headers, refusals, path safety.

The index tree is written by hand in the generator's on-disk format so these tests exercise
the app alone; tests/e2e/test_install.py runs the whole service with the real generator.
"""

from __future__ import annotations

import gzip
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pypi_insiders import config, directories
from pypi_insiders.files import atomic_write
from pypi_insiders.web.app import make_app
from pypi_insiders.web.negotiate import acceptable
from pypi_insiders.web.page_cache import PageCache
from tests.conftest import ConfigMaker
from tests.support.distfiles import make_wheel
from tests.support.server_fixtures import (
    JSON_TYPE,
    Reply,
    ThreadedServer,
    request,
    status_snapshot,
    write_index,
)

WHEEL = "demo_pkg-1.0-py3-none-any.whl"


@dataclass
class Served:
    url: str
    data: Path
    config: config.Config

    def get(self, path: str, method: str = "GET", **headers: str) -> Reply:
        return request(self.url, path, method, {k.replace("_", "-"): v for k, v in headers.items()})


@pytest.fixture
def served(make_config: ConfigMaker, data_dir: Path) -> Iterator[Served]:
    loaded = config.load(str(make_config()))
    make_wheel(data_dir / "store" / "demo-pkg", "demo-pkg", "1.0")
    (data_dir / "store" / "demo-pkg" / "notes.txt").write_text("not a distribution")
    (data_dir / "store" / "demo-pkg" / ".demo_pkg-2.0-py3-none-any.whl.part").write_text("half")
    write_index(data_dir / "index", {"demo-pkg": [f"demo-pkg/{WHEEL}"]})
    metadata = data_dir / "index" / "packages" / "demo-pkg" / f"{WHEEL}.metadata"
    metadata.parent.mkdir(parents=True)
    metadata.write_text("Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\n")
    with ThreadedServer(make_app(loaded, status=status_snapshot(loaded))) as server:
        yield Served(server.url, data_dir, loaded)


def test_app_project_page_is_html_by_default(served: Served) -> None:
    reply = served.get("/simple/demo-pkg/")
    assert reply.status == 200
    assert reply.header("Content-Type") == "text/html; charset=utf-8"
    assert reply.header("Content-Length") == str(len(reply.body))
    assert reply.header("Vary") == "Accept, Accept-Encoding"
    assert reply.header("ETag")
    assert reply.header("Last-Modified")
    assert "max-age=" in (reply.header("Cache-Control") or "")
    assert f"../../packages/demo-pkg/{WHEEL}".encode() in reply.body


@pytest.mark.parametrize(("accept", "expected"), [
    ("", "text/html"),
    ("*/*", "text/html"),
    ("text/html", "text/html"),
    ("application/vnd.pypi.simple.v1+json", JSON_TYPE),
    ("application/vnd.pypi.simple.v1+html", "application/vnd.pypi.simple.v1+html"),
    ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.1, text/html;q=0.01",
     JSON_TYPE),
    ("text/html;q=0.2, application/vnd.pypi.simple.v1+json;q=0.9", JSON_TYPE),
    ("application/*;q=0.5, text/html;q=0.4", "application/vnd.pypi.simple.v1+html"),
    ("application/vnd.pypi.simple.v1+json;q=0, */*;q=0.1", "text/html"),
    ("application/vnd.pypi.simple.latest+json", JSON_TYPE),
    ("application/vnd.pypi.simple.latest+html;q=0.5, text/html;q=0.1", "application/vnd.pypi.simple.v1+html"),
    ("application/json", None),
    ("text/plain, image/*", None),
    ("*/*;q=0", None),
])
def test_app_negotiates_pep_691_formats(served: Served, accept: str, expected: str | None) -> None:
    for path in ("/simple/", "/simple/demo-pkg/"):
        reply = served.get(path, Accept=accept)
        if expected is None:
            assert reply.status == 406, path
            assert b"application/vnd.pypi.simple.v1+json" in reply.body
        else:
            assert reply.status == 200, path
            assert (reply.header("Content-Type") or "").split(";")[0] == expected
        assert (reply.header("Vary") or "").startswith("Accept")


def test_app_json_page_is_the_generated_json(served: Served) -> None:
    reply = served.get("/simple/demo-pkg/", Accept=JSON_TYPE)
    assert reply.body == (served.data / "index/simple/demo-pkg/index.json").read_bytes()


@pytest.mark.parametrize(("query", "status", "content_type"), [
    ("?format=application/vnd.pypi.simple.v1+json", 200, JSON_TYPE),
    ("?format=application%2Fvnd.pypi.simple.v1%2Bjson", 200, JSON_TYPE),
    ("?format=text/html", 200, "text/html"),
    ("?format=application/xml", 406, None),
])
def test_app_format_query_overrides_accept(served: Served, query: str, status: int,
                                           content_type: str | None) -> None:
    reply = served.get(f"/simple/demo-pkg/{query}", Accept="text/html")
    assert reply.status == status
    if content_type:
        assert (reply.header("Content-Type") or "").split(";")[0] == content_type


def test_app_acceptable_ignores_malformed_ranges() -> None:
    assert acceptable("garbage, text/html;q=abc")[0].media_type == "text/html"


def test_app_head_sends_headers_without_body(served: Served) -> None:
    for path in ("/", "/simple/", "/simple/demo-pkg/", f"/packages/demo-pkg/{WHEEL}"):
        get, head = served.get(path), served.get(path, "HEAD")
        assert head.status == 200
        assert head.body == b""
        assert head.header("Content-Length") == get.header("Content-Length") == str(len(get.body))
        assert head.header("ETag") == get.header("ETag")


def test_app_answers_304_to_if_none_match_and_if_modified_since(served: Served) -> None:
    for path in ("/simple/demo-pkg/", "/simple/", f"/packages/demo-pkg/{WHEEL}"):
        first = served.get(path)
        etag, modified = first.header("ETag") or "", first.header("Last-Modified") or ""
        assert served.get(path, If_None_Match=etag).status == 304
        assert served.get(path, If_None_Match=f'"other", W/{etag}').status == 304
        assert served.get(path, If_None_Match='"other"').status == 200
        assert served.get(path, If_Modified_Since=modified).status == 304
        assert served.get(path, If_Modified_Since="Thu, 01 Jan 1970 00:00:00 GMT").status == 200
        # If-None-Match wins over If-Modified-Since (RFC 9110)
        assert served.get(path, If_None_Match='"other"', If_Modified_Since=modified).status == 200
        reply = served.get(path, If_None_Match=etag)
        assert reply.body == b""
        assert reply.header("ETag") == etag


def test_app_serves_a_regenerated_page_at_once(served: Served) -> None:
    page = served.data / "index/simple/demo-pkg/index.html"
    before = served.get("/simple/demo-pkg/")
    atomic_write(page, b"<a href='x'>new page</a>", durable=False)
    after = served.get("/simple/demo-pkg/")
    assert after.body == b"<a href='x'>new page</a>"
    assert after.header("ETag") != before.header("ETag")
    assert served.get("/simple/demo-pkg/", If_None_Match=before.header("ETag") or "").status == 200


@pytest.mark.parametrize(("path", "location"), [
    ("/simple/Demo-Pkg/", "../demo-pkg/"),
    ("/simple/demo_pkg/", "../demo-pkg/"),
    ("/simple/DEMO.PKG/?format=text/html", "../demo-pkg/?format=text/html"),
    ("/simple/demo-pkg", "demo-pkg/"),
    ("/simple/Demo_Pkg", "demo-pkg/"),
    ("/simple", "simple/"),
])
def test_app_redirects_to_the_normalized_url(served: Served, path: str, location: str) -> None:
    reply = served.get(path)
    assert reply.status == 301
    assert reply.header("Location") == location


@pytest.mark.parametrize("path", [
    "/nothing", "/simple/demo-pkg/extra", "/simple/-bad-/", "/simple/demo-pkg//", "/packages/",
    "/packages/demo-pkg/", "/packages/demo-pkg/demo_pkg-9.0-py3-none-any.whl", "/index.html",
    "/simple/index.json/x", "/packages/demo-pkg/notes.txt",
])
def test_app_unknown_paths_are_404_with_a_reason(served: Served, path: str) -> None:
    reply = served.get(path)
    assert reply.status == 404
    assert reply.header("Content-Type") == "text/plain; charset=utf-8"
    assert 0 < len(reply.body) < 100
    assert reply.body.endswith(b"\n")


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("PUT", "/simple/demo-pkg/", "GET, HEAD"),
    ("DELETE", f"/packages/demo-pkg/{WHEEL}", "GET, HEAD"),
    ("POST", "/simple/", "GET, HEAD"),
    ("OPTIONS", "/", "GET, HEAD, POST"),
    ("GET", "/legacy/", "POST"),
    ("PATCH", "/legacy/", "POST"),
])
def test_app_other_methods_are_405_with_allow(served: Served, method: str, path: str, allow: str) -> None:
    reply = served.get(path, method)
    assert reply.status == 405
    assert reply.header("Allow") == allow


def test_app_upload_is_403_when_disabled(served: Served) -> None:
    assert not served.config.upload.enabled
    for path in ("/", "/legacy/"):
        reply = request(served.url, path, "POST", {"Content-Type": "multipart/form-data; boundary=x"},
                        body=b"--x--\r\n")
        assert reply.status == 403
        assert reply.body == b"uploads are disabled\n"


def test_app_streams_distribution_files_and_metadata(served: Served) -> None:
    wheel = served.get(f"/packages/demo-pkg/{WHEEL}")
    assert wheel.status == 200
    assert wheel.body == (served.data / "store/demo-pkg" / WHEEL).read_bytes()
    assert wheel.header("Content-Type") == "application/octet-stream"
    assert "immutable" in (wheel.header("Cache-Control") or "")
    metadata = served.get(f"/packages/demo-pkg/{WHEEL}.metadata")
    assert metadata.status == 200
    assert metadata.body.startswith(b"Metadata-Version: 2.1")


@pytest.mark.parametrize("path", [
    "/packages/../config.toml",
    "/packages/%2e%2e/config.toml",
    "/packages/demo-pkg/%2e%2e/%2e%2e/config.toml",
    "/packages/demo-pkg%2f..%2f..%2fconfig.toml",
    "/packages/%2fetc%2fpasswd",
    "/packages//etc/passwd",
    "/packages/demo-pkg/demo_pkg-1.0-py3-none-any.whl%00.txt",
    "/packages/demo-pkg/.demo_pkg-2.0-py3-none-any.whl.part",
    "/packages/./demo-pkg/" + WHEEL,
    "/packages/demo-pkg\\..\\..\\config.toml",
    "/packages/escape/outside-1.0-py3-none-any.whl",
    "/packages/escape/outside-1.0-py3-none-any.whl.metadata",
    "/packages/../index/simple/index.html",
    "/packages/..%2f..%2fconfig.toml.metadata",
    "/simple/..%2f..%2fconfig.toml/",
    "/simple/%2e%2e/",
])
def test_app_no_path_leaves_the_data_directories(served: Served, tmp_path: Path, path: str) -> None:
    outside = tmp_path / "outside"
    make_wheel(outside, "outside", "1.0")
    (outside / "outside-1.0-py3-none-any.whl.metadata").write_text("secret")
    (served.data / "store" / "escape").symlink_to(outside)
    (served.data / "index" / "packages" / "escape").symlink_to(outside)
    reply = served.get(path)
    assert reply.status in (404, 400), reply
    assert b"secret" not in reply.body
    assert b"[paths]" not in reply.body


def test_app_follows_symlinks_that_stay_inside_the_store(served: Served) -> None:
    (served.data / "store" / "alias").symlink_to(served.data / "store" / "demo-pkg")
    assert served.get(f"/packages/alias/{WHEEL}").status == 200


def test_app_root_pages_are_503_before_the_first_generation(served: Served) -> None:
    for page in ("index.html", "simple/index.html", "simple/index.json"):
        os.unlink(served.data / "index" / page)  # noqa: PTH108
    assert served.get("/").status == 503
    assert served.get("/simple/").status == 503
    assert served.get("/simple/", Accept=JSON_TYPE).status == 503


def test_app_home_page_is_html(served: Served) -> None:
    reply = served.get("/")
    assert reply.status == 200
    assert reply.header("Content-Type") == "text/html; charset=utf-8"
    assert reply.header("Vary") == "Accept-Encoding"  # not negotiated on Accept, only compressed


def test_app_project_page_removed_is_404_not_stale(served: Served) -> None:
    assert served.get("/simple/demo-pkg/").status == 200
    for name in ("index.html", "index.json"):
        os.unlink(served.data / "index/simple/demo-pkg" / name)  # noqa: PTH108
    time.sleep(0.01)
    assert served.get("/simple/demo-pkg/").status == 404


def test_app_status_pages_come_from_the_status_module(served: Served) -> None:
    as_json = served.get("/status.json")
    assert as_json.status == 200
    assert as_json.header("Content-Type") == "application/json"
    assert json.loads(as_json.body)["repositories"] == []
    page = served.get("/status")
    assert page.status == 200
    assert page.header("Content-Type") == "text/html; charset=utf-8"
    assert b"no repositories watched" in page.body


def test_app_upload_without_credentials_asks_for_basic_auth(make_config: ConfigMaker, tmp_path: Path) -> None:
    (tmp_path / "users").write_text("")
    loaded = config.load(str(make_config(upload={"enabled": True})))
    directories.prepare(loaded, create=True)
    with ThreadedServer(make_app(loaded)) as server:
        reply = request(server.url, "/legacy/", "POST",
                        {"Content-Type": "multipart/form-data; boundary=x"}, body=b"--x--\r\n")
    assert reply.status == 401
    assert reply.header("WWW-Authenticate") == 'Basic realm="pypi-insiders"'


def test_app_page_cache_stays_within_its_bound(tmp_path: Path) -> None:
    cache = PageCache(limit_bytes=20_000)
    for number in range(50):
        page = tmp_path / f"{number}.html"
        page.write_bytes(b"x" * 1000)
        found = cache.get(str(page), "text/html", vary=False)
        assert found is not None
        assert found.body == b"x" * 1000
    assert cache.size <= 20_000
    assert 0 < len(cache) < 50
    assert cache.get(str(tmp_path / "0.html"), "text/html", vary=False) is not None  # reloaded
    assert cache.get(str(tmp_path / "missing.html"), "text/html", vary=False) is None


def test_app_each_representation_has_its_own_etag(served: Served) -> None:
    tags = {served.get("/simple/demo-pkg/", Accept=accept).header("ETag")
            for accept in ("text/html", "application/vnd.pypi.simple.v1+html", JSON_TYPE)}
    assert len(tags) == 3


@pytest.fixture
def big_project(served: Served) -> str:
    """A project with 60 files: a page well over the size from which it is worth compressing."""
    files = [f"big/big-1.{n}-py3-none-any.whl" for n in range(60)]
    write_index(served.data / "index", {"demo-pkg": [f"demo-pkg/{WHEEL}"], "big": files})
    return "/simple/big/"


@pytest.mark.parametrize("accept", ["", JSON_TYPE])
def test_app_pages_are_gzipped_for_clients_that_accept_it(served: Served, big_project: str,
                                                           accept: str) -> None:
    plain = served.get(big_project, Accept=accept, Accept_Encoding="identity")
    packed = served.get(big_project, Accept=accept, Accept_Encoding="gzip, deflate")  # pip's header
    assert plain.header("Content-Encoding") is None
    assert packed.header("Content-Encoding") == "gzip"
    assert gzip.decompress(packed.body) == plain.body
    assert packed.header("Content-Length") == str(len(packed.body))
    assert len(packed.body) * 4 < len(plain.body)
    assert packed.header("Content-Type") == plain.header("Content-Type")
    for reply in (plain, packed):
        assert reply.header("Vary") == "Accept, Accept-Encoding"
    etag = packed.header("ETag") or ""
    assert etag not in ("", plain.header("ETag"))
    revalidated = [served.get(big_project, Accept=accept, Accept_Encoding=coding, If_None_Match=etag).status
                   for coding in ("gzip", "identity")]
    assert revalidated == [304, 200]  # the gzip tag does not validate the identity representation
    head = served.get(big_project, "HEAD", Accept=accept, Accept_Encoding="gzip")
    assert (head.header("Content-Length"), head.body) == (packed.header("Content-Length"), b"")


@pytest.mark.parametrize("header", ["gzip;q=0", "br", "identity", "gzip;q=zero", "", "*, gzip;q=0",
                                    "gzip;q=2"])
def test_app_pages_are_not_gzipped_unless_gzip_is_acceptable(served: Served, big_project: str,
                                                             header: str) -> None:
    reply = served.get(big_project, Accept_Encoding=header)
    assert reply.status == 200
    assert reply.header("Content-Encoding") is None
    assert reply.body.startswith(b"<a href=")


@pytest.mark.parametrize("header", ["gzip", "GZIP;q=0.5", "x-gzip", "*", "br, gzip;q=1.0"])
def test_app_accept_encoding_spellings_of_gzip(served: Served, big_project: str, header: str) -> None:
    assert served.get(big_project, Accept_Encoding=header).header("Content-Encoding") == "gzip"


def test_app_small_pages_are_not_worth_compressing(served: Served) -> None:
    reply = served.get("/simple/demo-pkg/", Accept_Encoding="gzip")
    assert len(reply.body) < 1024
    assert reply.header("Content-Encoding") is None
    assert reply.header("Vary") == "Accept, Accept-Encoding"


def test_app_regenerated_page_is_compressed_afresh(served: Served, big_project: str) -> None:
    before = served.get(big_project, Accept_Encoding="gzip")
    files = [f"big/big-2.{n}-py3-none-any.whl" for n in range(60)]
    time.sleep(0.01)
    write_index(served.data / "index", {"demo-pkg": [f"demo-pkg/{WHEEL}"], "big": files})
    after = served.get(big_project, Accept_Encoding="gzip")
    assert b"big-2.0-py3-none-any.whl" in gzip.decompress(after.body)
    assert after.header("ETag") != before.header("ETag")


def test_app_small_page_is_cached_once_whatever_the_client_accepts(make_config: ConfigMaker,
                                                                    data_dir: Path) -> None:
    write_index(data_dir / "index", {"demo-pkg": [f"demo-pkg/{WHEEL}"]})
    cache = PageCache()
    with ThreadedServer(make_app(config.load(str(make_config())), pages=cache)) as server:
        for coding in ("gzip", "identity", "gzip"):
            assert request(server.url, "/simple/demo-pkg/", headers={"Accept-Encoding": coding}).status == 200
    assert len(cache) == 1


def test_app_page_asked_for_at_once_is_read_and_compressed_once(make_config: ConfigMaker,
                                                                 data_dir: Path) -> None:
    """Sixteen clients at the same moment after a regeneration: one load, sixteen answers."""
    files = [f"big/big-3.{n}-py3-none-any.whl" for n in range(2000)]
    write_index(data_dir / "index", {"big": files})
    cache = PageCache()
    start = threading.Barrier(16)
    replies: list[int] = []

    def ask() -> None:
        start.wait(timeout=30)
        reply = request(server.url, "/simple/big/", headers={"Accept-Encoding": "gzip"})
        replies.append(reply.status if reply.header("Content-Encoding") == "gzip" else -1)

    with ThreadedServer(make_app(config.load(str(make_config())), pages=cache)) as server:
        clients = [threading.Thread(target=ask) for _ in range(16)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(timeout=60)
    assert replies == [200] * 16
    assert cache.loads == 1


def test_app_sends_a_root_list_larger_than_waitress_buffers_in_memory_whole(served: Served) -> None:
    """Past 1 MiB waitress spills a body to a temp file; ours go out through its file wrapper:
    every byte still arrives, identity and gzip, and HEAD still sends none."""
    names = [f"project-{number:06d}" for number in range(40_000)]  # about 1.7 MB, like 30,000 projects
    page = "".join(f'    <a href="{n}/">{n}</a><br>\n' for n in names).encode()
    atomic_write(served.data / "index" / "simple" / "index.html", page)
    identity = served.get("/simple/", Accept="text/html")
    assert identity.status == 200
    assert identity.body == page
    assert identity.header("Content-Length") == str(len(page))
    zipped = served.get("/simple/", Accept="text/html", Accept_Encoding="gzip")
    assert zipped.header("Content-Encoding") == "gzip"
    assert gzip.decompress(zipped.body) == page
    head = served.get("/simple/", "HEAD", Accept="text/html")
    assert (head.status, head.body, head.header("Content-Length")) == (200, b"", str(len(page)))
