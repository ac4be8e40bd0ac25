"""The sample nginx site in front of the real service: the service decides, nginx sends the bytes.

A real nginx master (Debian's nginx-light) runs the shipped sample, rendered with test ports
and paths, in front of the app on waitress made as the service makes it. Read access is the
team of test_access.py (`tests/support/team_fixtures.py`): anonymous = "none", users with read
scopes, a public project.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from pypi_insiders import cli, config
from pypi_insiders.service.server import create_server
from pypi_insiders.web.app import make_app
from tests.conftest import ConfigMaker
from tests.support import team_fixtures as team_setup
from tests.support.distfiles import make_wheel
from tests.support.nginx_fixtures import Nginx, running_nginx
from tests.support.server_fixtures import FakeUpstream, Reply, ThreadedServer, basic, request, status_snapshot

PRIVATE = f"/packages/private-pkg/{team_setup.PRIVATE_WHEEL}"
PUBLIC = f"/packages/public-pkg/{team_setup.PUBLIC_WHEEL}"
LOCAL_VERSION_WHEEL = "private_pkg-1.1+insiders.2-py3-none-any.whl"  # "+" must survive the redirect


@dataclass
class Front:
    nginx: Nginx
    service: str
    upstream: str
    store: Path
    tokens: dict[str, str]

    def get(self, path: str, auth: str | None = None, method: str = "GET", **headers: str) -> Reply:
        return team_setup.request_as(self.nginx.url, path, auth, method, **headers)

    def user(self, name: str) -> str:
        token = self.tokens.get(name)
        return basic("__token__", token) if token else basic(name, team_setup.SECRET)


@pytest.fixture
def front(make_config: ConfigMaker, data_dir: Path, tmp_path: Path) -> Iterator[Front]:
    with team_setup.team_upstream() as upstream:
        loaded, tokens = team_setup.make_team(make_config, data_dir, tmp_path, upstream)
        make_wheel(data_dir / "store" / "private-pkg", "private-pkg", "1.1+insiders.2")
        loaded = replace(loaded, server=replace(loaded.server, trusted_proxy="127.0.0.1"))
        app = make_app(loaded, status=status_snapshot(loaded))
        store, index = data_dir / "store", data_dir / "index"
        with ThreadedServer(app, server=create_server(app, loaded)) as service, \
                running_nginx(tmp_path / "nginx", service.url, store, index) as nginx:
            yield Front(nginx, service.url, upstream.url, data_dir / "store", tokens)


@pytest.mark.parametrize("path", [
    "/simple/private-pkg/", PRIVATE, f"{PRIVATE}.metadata", f"/packages/private-pkg/{LOCAL_VERSION_WHEEL}",
    "/packages/private-pkg/private_pkg-7.0-py3-none-any.whl",  # absent: the same answer, no oracle
    "/status",
])
def test_nginx_sample_anonymous_is_asked_for_credentials(front: Front, path: str) -> None:
    reply = front.get(path)
    assert reply.status == 401, (reply, front.nginx.error_log())
    assert reply.header("WWW-Authenticate") == team_setup.CHALLENGE
    assert b"PK" not in reply.body
    assert b"Metadata-Version" not in reply.body


def test_nginx_sample_refuses_wrong_credentials_and_other_scopes(front: Front) -> None:
    assert front.get(PRIVATE, basic("sponsor", "wrong-secret")).status == 401
    refused = front.get(PRIVATE, front.user("ci"))  # ci reads public-pkg only
    assert refused.status == 403
    assert b"PK" not in refused.body


@pytest.mark.parametrize(("user", "path", "relpath"), [
    ("ci", PUBLIC, f"public-pkg/{team_setup.PUBLIC_WHEEL}"),
    ("sponsor", PRIVATE, f"private-pkg/{team_setup.PRIVATE_WHEEL}"),
    ("member", f"/packages/private-pkg/{LOCAL_VERSION_WHEEL}", f"private-pkg/{LOCAL_VERSION_WHEEL}"),
])
def test_nginx_sample_sends_the_file_bytes_once_the_service_said_yes(front: Front, user: str, path: str,
                                                                     relpath: str) -> None:
    expected = (front.store / relpath).read_bytes()
    reply = front.get(path, front.user(user))
    assert reply.status == 200, (reply, front.nginx.error_log())
    assert reply.body == expected
    assert reply.header("Content-Type") == "application/octet-stream"
    assert reply.header("X-Accel-Redirect") is None  # nginx keeps the internal name to itself
    assert "private" in (reply.header("Cache-Control") or "")  # a shared cache must not keep it
    assert "Authorization" in (reply.header("Vary") or "")  # nor give it to another caller
    # The bytes came from nginx: the service answers the same request with none, and nginx
    # serves byte ranges of it, which the service never does.
    direct = request(front.service, path, headers={"Authorization": front.user(user),
                                                   "X-Sendfile-Type": "X-Accel-Redirect"})
    assert (direct.status, direct.body) == (200, b"")
    assert direct.header("X-Accel-Redirect") == "/-/store/" + relpath.replace("+", "%2B")
    ranged = front.get(path, front.user(user), Range="bytes=0-9")
    assert (ranged.status, ranged.body) == (206, expected[:10])
    head = front.get(path, front.user(user), method="HEAD")
    assert (head.status, head.header("Content-Length")) == (200, str(len(expected)))
    # Anyone else's X-Sendfile-Type is ignored: the bytes, never an empty answer for a cache.
    other = from_other_peer(front.service, path, {"Authorization": front.user(user),
                                                  "X-Sendfile-Type": "X-Accel-Redirect"})
    assert (other.status, other.body, other.header("X-Accel-Redirect")) == (200, expected, None)


def test_nginx_sample_sends_metadata_and_keeps_the_services_pages(front: Front) -> None:
    metadata = front.get(f"{PRIVATE}.metadata", front.user("sponsor"))
    assert metadata.status == 200
    assert metadata.body == b"Metadata-Version: 2.1\nName: private-pkg\nVersion: 1.0\n"
    page = front.get("/simple/private-pkg/", front.user("member"))
    assert page.status == 200
    assert team_setup.PRIVATE_WHEEL.encode() in page.body
    assert "Authorization" in (page.header("Vary") or "")
    assert "private" in (page.header("Cache-Control") or "")


def test_nginx_sample_internal_locations_are_not_for_clients(front: Front) -> None:
    for path in (f"/-/store/private-pkg/{team_setup.PRIVATE_WHEEL}",
                 f"/-/metadata/private-pkg/{team_setup.PRIVATE_WHEEL}.metadata"):
        assert front.get(path).status == 404
        assert front.get(path, front.user("sponsor")).status == 404
    # A client's own X-Sendfile-Type is replaced by the sample's: still the bytes, never a name.
    reply = front.get(PRIVATE, front.user("sponsor"), X_Sendfile_Type="X-Accel-Redirect")
    assert reply.status == 200
    assert reply.body[:2] == b"PK"


def from_other_peer(base: str, path: str, headers: dict[str, str], method: str = "GET",
                    body: bytes | None = None) -> Reply:
    """A request to the service from 127.0.0.2: a local process, not the trusted proxy."""
    port = int(base.rstrip("/").rpartition(":")[2])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=("127.0.0.2", 0))
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def test_nginx_sample_limits_bodies_to_uploads(front: Front) -> None:
    big = bytes(1_000_000)
    for path in ("/simple/", "/-/yank", "/simple/private-pkg/"):
        reply = request(front.nginx.url, path, "POST", {"Content-Type": "text/plain"}, body=big)
        assert reply.status == 413, (path, reply)
    upload = request(front.nginx.url, "/legacy/", "POST",
                     {"Content-Type": "text/plain", "Authorization": basic("sponsor", "wrong")}, body=big)
    assert upload.status == 403, upload  # through to the service, which judged the credentials


def test_nginx_sample_keeps_public_projects_and_fallback(front: Front) -> None:
    """Whoever may not read a public project's local build gets upstream's, behind nginx too."""
    anonymous = front.get("/simple/public-pkg/")
    assert anonymous.status in (301, 302, 303, 307), anonymous
    assert anonymous.header("Location") == f"{front.upstream}simple/public-pkg/"
    member = front.get("/simple/public-pkg/", front.user("member"))
    assert member.header("Location") == f"{front.upstream}simple/public-pkg/"
    local = front.get("/simple/public-pkg/", front.user("ci"))
    assert local.status == 200
    assert team_setup.PUBLIC_WHEEL.encode() in local.body
    assert front.get(PUBLIC).status == 401  # the local file itself stays behind credentials
    remote = front.get("/simple/remote-only/")
    assert remote.header("Location") == f"{front.upstream}simple/remote-only/"
    assert front.get("/simple/Private_Pkg/", front.user("sponsor")).header("Location") == "../private-pkg/"


# --------------------------------------------------------------------------- the shipped files alone

SHIPPED_CONFIG = Path(__file__).resolve().parents[2] / "etc" / "pypi-insiders" / "config.toml"


def render_shipped_config(data_dir: Path, tmp_path: Path, upstream: str) -> Path:
    """The shipped conffile with only its paths, port and upstream set: no [access], no trusted_proxy."""
    text = SHIPPED_CONFIG.read_text()
    for old, new in (('#listen = "127.0.0.1:31411"', 'listen = "127.0.0.1:0"'),
                     ('#data = "/var/lib/pypi-insiders"', f'data = "{data_dir}"'),
                     ('#cache = "/var/cache/pypi-insiders"', f'cache = "{tmp_path / "cache"}"'),
                     ('#url = ""\n', f'url = "{upstream}simple/"\n'),
                     ('#users_file = "/etc/pypi-insiders/users"', f'users_file = "{tmp_path / "users"}"'),
                     ('#repos_dir = "/etc/pypi-insiders/repos.d"', f'repos_dir = "{tmp_path / "repos.d"}"'),
                     ('#credentials_dir = "/etc/pypi-insiders/credentials"',
                      f'credentials_dir = "{tmp_path / "credentials"}"')):
        assert text.count(old) == 1, f"the shipped config no longer has exactly one {old!r}"
        text = text.replace(old, new)
    path = tmp_path / "shipped.toml"
    path.write_text(text)
    return path


def test_nginx_sample_in_front_of_the_shipped_config_opens_nothing(
        make_config: ConfigMaker, data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The sample site and the shipped config as they are: the index listens on loopback, where
    anonymous callers read everything, and nginx connects from loopback. Nothing private leaks."""
    fake = FakeUpstream(projects={"remote-only": {"remote_only-1.0-py3-none-any.whl": b"remote"}})
    with ThreadedServer(fake.app) as upstream:
        team_setup.make_team(make_config, data_dir, tmp_path, upstream)  # the store, index and users
        shipped = render_shipped_config(data_dir, tmp_path, upstream.url)
        loaded = config.load(str(shipped))
        assert (loaded.server.trusted_proxy, loaded.access.anonymous) == (None, "read")
        app = make_app(loaded, status=status_snapshot(loaded))
        store, index = data_dir / "store", data_dir / "index"
        with ThreadedServer(app, server=create_server(app, loaded)) as service, \
                running_nginx(tmp_path / "nginx", service.url, store, index) as nginx:
            for path in ("/simple/private-pkg/", PRIVATE, f"{PRIVATE}.metadata", "/simple/public-pkg/",
                         PUBLIC, "/status.json", "/project/private-pkg/"):
                reply = request(nginx.url, path)
                assert reply.status == 401, (path, reply)
                assert b"PK" not in reply.body
            for path in ("/simple/", "/", "/project/"):
                assert b"private-pkg" not in request(nginx.url, path).body
            assert b"private-pkg" not in request(nginx.url, "/simple/", headers={
                "Accept": "application/vnd.pypi.simple.v1+json"}).body
            # Those who may still read, with their credentials: the bytes, sent by the service.
            sponsor = basic("sponsor", team_setup.SECRET)
            reply = request(nginx.url, PRIVATE, headers={"Authorization": sponsor})
            assert (reply.status, reply.body[:2]) == (200, b"PK")
            # This host's own users, straight to the index, still read anonymously (the default).
            assert request(service.url, "/simple/private-pkg/").status == 200
    warnings = [r.getMessage() for r in caplog.records if "trusted_proxy is not set" in r.getMessage()]
    assert len(warnings) == 1, warnings  # once, not per request
    assert 'set trusted_proxy = "127.0.0.1"' in warnings[0]
    # check-config, which the unit runs at every start and reload, says it too.
    capsys.readouterr()
    assert cli.main(["--config", str(shipped), "check-config"]) == 0
    said = capsys.readouterr().err
    assert "pypi-insiders: warning: server.trusted_proxy: " in said
    assert "requests from 127.0.0.1 carry proxy headers" in said
