"""Read access over real HTTP: the anonymous policy, read scopes, public projects, what leaks.

The app runs on a loopback waitress server with a second one playing upstream, so a
redirect or a proxied page is what a client would really get. Users are in a real users
file, hashed as `users add` hashes them.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pypi_insiders import config, fetch_queue
from pypi_insiders.errors import ConfigError
from pypi_insiders.web.app import IndexApp, make_app
from pypi_insiders.web.passwords import hash_secret
from pypi_insiders.web.users import User
from tests.conftest import ConfigMaker
from tests.support.distfiles import make_wheel
from tests.support.server_fixtures import (
    JSON_TYPE,
    Reply,
    ThreadedServer,
    basic,
    refreshing,
    request,
    serve_process,
    status_snapshot,
    wait_for,
)
from tests.support.team_fixtures import (
    CHALLENGE,
    PRIVATE_WHEEL,
    PUBLIC_WHEEL,
    SECRET,
    make_team,
    request_as,
    team_upstream,
    write_users,
)


@dataclass
class Team:
    url: str
    upstream: str
    app: IndexApp
    data: Path
    users_file: Path
    tokens: dict[str, str]

    def get(self, path: str, auth: str | None = None, **headers: str) -> Reply:
        return request_as(self.url, path, auth, **headers)

    def as_user(self, name: str) -> str:
        return basic(name, self.tokens.get(name, SECRET))


@pytest.fixture
def upstream_server() -> Iterator[ThreadedServer]:
    with team_upstream() as server:
        yield server


@pytest.fixture
def team(make_config: ConfigMaker, data_dir: Path, tmp_path: Path,
         upstream_server: ThreadedServer) -> Iterator[Team]:
    loaded, tokens = make_team(make_config, data_dir, tmp_path, upstream_server)
    app = make_app(loaded, status=status_snapshot(loaded))
    with ThreadedServer(app) as server:
        yield Team(server.url, upstream_server.url, app, data_dir, tmp_path / "users", tokens)


# --------------------------------------------------------------------------- anonymous = "none"


@pytest.mark.parametrize("path", [
    "/simple/private-pkg/", "/simple/private-pkg/?format=application/vnd.pypi.simple.v1+json",
    f"/packages/private-pkg/{PRIVATE_WHEEL}", f"/packages/private-pkg/{PRIVATE_WHEEL}.metadata",
    "/packages/private-pkg/private_pkg-7.0-py3-none-any.whl",  # absent: the same answer, no oracle
    "/status", "/status.json", "/project/private-pkg/",
])
def test_access_anonymous_none_asks_for_credentials_and_shows_nothing(team: Team, path: str) -> None:
    reply = team.get(path)
    assert reply.status == 401, reply
    assert reply.header("WWW-Authenticate") == CHALLENGE
    assert reply.header("Location") is None
    assert b"private" not in reply.body
    assert reply.header("Cache-Control") == "no-store"


def test_access_anonymous_none_json_page_is_401_too(team: Team) -> None:
    reply = team.get("/simple/private-pkg/", Accept=JSON_TYPE)
    assert reply.status == 401
    assert reply.header("WWW-Authenticate") == CHALLENGE


def test_access_never_local_name_falls_through_with_or_without_credentials(team: Team) -> None:
    for auth in (None, team.as_user("sponsor"), team.as_user("member")):
        reply = team.get("/simple/remote-only/", auth)
        assert reply.status == 302
        assert reply.header("Location") == f"{team.upstream}simple/remote-only/"


def test_access_reader_gets_the_local_page_privately(team: Team) -> None:
    for user in ("sponsor", "member"):
        reply = team.get("/simple/private-pkg/", team.as_user(user))
        assert reply.status == 200, (user, reply)
        assert PRIVATE_WHEEL.encode() in reply.body
        assert reply.header("Cache-Control") == "max-age=30, private"
        assert "Authorization" in (reply.header("Vary") or "")
        wheel = team.get(f"/packages/private-pkg/{PRIVATE_WHEEL}", team.as_user(user))
        assert wheel.status == 200
        assert wheel.body == (team.data / "store" / "private-pkg" / PRIVATE_WHEEL).read_bytes()
        assert wheel.header("Cache-Control") == "max-age=31536000, private, immutable"
        assert wheel.header("Vary") == "Authorization"


def test_access_project_page_is_readable_exactly_like_the_simple_page(team: Team) -> None:
    for user in ("sponsor", "member"):
        reply = team.get("/project/private-pkg/", team.as_user(user))
        assert reply.status == 200, (user, reply)
        assert PRIVATE_WHEEL.encode() in reply.body
        assert reply.header("Cache-Control") == "private, max-age=30"
        assert "Authorization" in (reply.header("Vary") or "")
    home = team.get("/", team.as_user("member"))
    assert b'href="project/private-pkg/"' in home.body
    assert b'href="project/"' in home.body
    listing = {user: team.get("/project/", team.as_user(user) if user else None).body
               for user in ("sponsor", "member", "ci", None)}
    assert b'href="private-pkg/"' in listing["sponsor"]
    assert b'href="private-pkg/"' in listing["member"]
    assert b"private-pkg" not in listing["ci"]
    assert b"private-pkg" not in listing[None]
    for auth in (None, team.as_user("sponsor")):  # never held here: nothing to show, never upstream
        reply = team.get("/project/remote-only/", auth)
        assert (reply.status, reply.header("Location")) == (404, None)
    moved = team.get("/project/Private_Pkg/", team.as_user("member"))
    assert (moved.status, moved.header("Location")) == (301, "../private-pkg/")


def test_access_user_outside_the_scope_is_403_never_a_redirect(team: Team) -> None:
    for path in ("/simple/private-pkg/", f"/packages/private-pkg/{PRIVATE_WHEEL}",
                 f"/packages/private-pkg/{PRIVATE_WHEEL}.metadata", "/project/private-pkg/"):
        reply = team.get(path, team.as_user("ci"))
        assert reply.status == 403, (path, reply)
        assert reply.header("Location") is None
        assert PRIVATE_WHEEL.encode() not in reply.body


def test_access_public_project_goes_upstream_for_non_readers(team: Team) -> None:
    for auth in (None, team.as_user("member")):
        reply = team.get("/simple/public-pkg/", auth)
        assert reply.status == 302, reply
        assert reply.header("Location") == f"{team.upstream}simple/public-pkg/"
        assert "Authorization" in (reply.header("Vary") or "")
    for reader in ("sponsor", "ci"):  # ci's token with its user name, then with __token__
        reply = team.get("/simple/public-pkg/", team.as_user(reader))
        assert reply.status == 200
        assert PUBLIC_WHEEL.encode() in reply.body
    token = team.get("/simple/public-pkg/", basic("__token__", team.tokens["ci"]))
    assert token.status == 200
    assert PUBLIC_WHEEL.encode() in token.body


def test_access_public_project_is_proxied_for_non_readers(
        make_config: ConfigMaker, data_dir: Path, tmp_path: Path, upstream_server: ThreadedServer) -> None:
    loaded, _tokens = make_team(make_config, data_dir, tmp_path, upstream_server, fallback="proxy")
    with ThreadedServer(make_app(loaded)) as server:
        reply = request(server.url, "/simple/public-pkg/")
        assert reply.status == 200
        assert b"public_pkg-9.9-py3-none-any.whl" in reply.body
        assert PUBLIC_WHEEL.encode() not in reply.body
        assert reply.header("Vary") == "Accept, Authorization"
        local = request(server.url, "/simple/public-pkg/",
                        headers={"Authorization": basic("sponsor", SECRET)})
        assert PUBLIC_WHEEL.encode() in local.body


def test_access_root_list_shows_each_caller_what_it_may_read(team: Team) -> None:
    def names(auth: str | None) -> list[str]:
        reply = team.get("/simple/", auth, Accept=JSON_TYPE)
        assert reply.status == 200
        return [p["name"] for p in json.loads(reply.body)["projects"]]

    assert names(None) == []
    assert names(team.as_user("member")) == ["private-pkg"]
    assert names(team.as_user("ci")) == ["public-pkg"]
    assert names(team.as_user("sponsor")) == ["private-pkg", "public-pkg"]
    html = team.get("/simple/", team.as_user("member"))
    assert b"private-pkg" in html.body
    assert b"public-pkg" not in html.body
    assert "private" in (html.header("Cache-Control") or "")
    assert "Authorization" in (html.header("Vary") or "")
    home = team.get("/")
    assert b"private-pkg" not in home.body
    assert b"public-pkg" not in home.body


def test_access_page_cache_never_answers_one_caller_with_anothers_view(team: Team) -> None:
    assert team.get("/simple/private-pkg/", team.as_user("sponsor")).status == 200
    assert team.get("/simple/", team.as_user("sponsor")).status == 200
    after = team.get("/simple/private-pkg/")
    assert after.status == 401
    assert b"private_pkg" not in after.body
    assert team.get("/simple/private-pkg/", team.as_user("ci")).status == 403
    assert b"private-pkg" not in team.get("/simple/", team.as_user("ci")).body
    assert b"private-pkg" not in team.get("/simple/").body
    etag = team.get("/simple/private-pkg/", team.as_user("sponsor")).header("ETag")
    assert etag
    assert team.get("/simple/private-pkg/", If_None_Match=etag).status == 401


def test_access_status_shows_only_readable_repositories(team: Team, make_config: ConfigMaker) -> None:
    repos = {"a/private": {"url": "file:///nowhere/a", "distribution": "private-pkg"},
             "b/other": {"url": "file:///nowhere/b", "distribution": "other-pkg"}}
    loaded = config.load(str(make_config(repos=repos, access={"anonymous": "none"},
                                         upstream={"url": team.upstream + "simple/"})))
    team.app.reconfigure(loaded)
    status_snapshot(loaded)  # the service's parent writes it in the background
    shown = json.loads(team.get("/status.json", team.as_user("member")).body)
    assert [repo["key"] for repo in shown["repositories"]] == ["a/private"]
    everything = json.loads(team.get("/status.json", team.as_user("sponsor")).body)
    assert sorted(repo["key"] for repo in everything["repositories"]) == ["a/private", "b/other"]
    page = team.get("/status", team.as_user("ci"))
    assert page.status == 200
    assert b"a/private" not in page.body
    assert page.header("Vary") == "Authorization"


def test_access_status_config_problem_only_for_read_everything(
        team: Team, make_config: ConfigMaker, tmp_path: Path) -> None:
    """A broken drop-in's message names private repositories and paths: read `*` only (issue 22)."""
    repos = {"a/private": {"url": "file:///nowhere/a", "distribution": "private-pkg"}}
    loaded = config.load(str(make_config(repos=repos, access={"anonymous": "none"},
                                         upstream={"url": team.upstream + "simple/"})))
    (tmp_path / "repos.d").mkdir(exist_ok=True)
    (tmp_path / "repos.d" / "secret-repo.toml").write_text("[repos.x\n")
    team.app.reconfigure(loaded)
    status_snapshot(loaded)
    member = team.get("/status.json", team.as_user("member"))  # reads private-pkg only
    assert json.loads(member.body)["config_problem"] is None
    assert [repo["key"] for repo in json.loads(member.body)["repositories"]] == ["a/private"]
    page = team.get("/status", team.as_user("member"))
    assert (page.status, b"secret-repo" in page.body, b"configuration:" in page.body) == (200, False, False)
    sponsor = json.loads(team.get("/status.json", team.as_user("sponsor")).body)  # reads *
    assert "secret-repo.toml: not valid TOML" in sponsor["config_problem"]
    assert b"secret-repo.toml" in team.get("/status", team.as_user("sponsor")).body


def test_access_status_queue_shows_only_repositories_the_caller_may_read(
        team: Team, make_config: ConfigMaker) -> None:
    """A queued fetch names its repository: a caller sees only the queue entries of the
    repositories it is shown (issue 24), everything for read `*`."""
    repos = {"a/private": {"url": "file:///nowhere/a", "distribution": "private-pkg"},
             "b/secret": {"url": "file:///nowhere/b", "distribution": "secret-pkg"}}
    loaded = config.load(str(make_config(repos=repos, access={"anonymous": "none"},
                                         webhooks={"enabled": True},
                                         upstream={"url": team.upstream + "simple/"})))
    for key in repos:
        fetch_queue.enqueue(fetch_queue.queue_dir(loaded.paths.state), key)
    team.app.reconfigure(loaded)
    status_snapshot(loaded)
    member = json.loads(team.get("/status.json", team.as_user("member")).body)  # reads private-pkg only
    assert [q["key"] for q in member["webhooks"]["queue"]] == ["a/private"]
    assert b"b/secret" not in team.get("/status", team.as_user("member")).body
    sponsor = json.loads(team.get("/status.json", team.as_user("sponsor")).body)  # reads *
    assert sorted(q["key"] for q in sponsor["webhooks"]["queue"]) == ["a/private", "b/secret"]


# --------------------------------------------------------------------------- credentials


def test_access_wrong_or_unknown_credentials_are_401(team: Team) -> None:
    for auth in (basic("sponsor", "wrong-secret"), basic("nobody", SECRET), basic("__token__", SECRET)):
        reply = team.get("/simple/remote-only/", auth, X_Forwarded_For="ignored")
        assert reply.status == 401
        assert reply.header("WWW-Authenticate") == CHALLENGE
        assert b"wrong-secret" not in reply.body


def test_access_failed_logins_are_limited_like_uploads(team: Team) -> None:
    statuses = [team.get("/simple/private-pkg/", basic("sponsor", f"guess-{n}")).status for n in range(10)]
    assert statuses == [401] * 10
    reply = team.get("/simple/private-pkg/", team.as_user("sponsor"))  # even the right one waits
    assert reply.status == 429
    assert int(reply.header("Retry-After") or "0") > 0


def test_access_others_failures_never_refuse_a_correct_secret(team: Team) -> None:
    """Ten anonymous guessers and a wrong secret of another user, from the same address (a NAT,
    a CI egress, everyone behind a proxy): a valid, not yet cached token still gets in."""
    for n in range(10):
        assert team.get("/simple/private-pkg/", basic(f"nobody{n}", "x")).status == 401
    for n in range(10):
        assert team.get("/simple/private-pkg/", basic("sponsor", f"guess-{n}")).status == 401
    assert team.get("/simple/private-pkg/", basic("nobody-else", "x")).status == 429  # still limited
    assert team.get("/simple/private-pkg/", basic("sponsor", SECRET)).status == 429  # the guessed one
    reply = team.get("/simple/public-pkg/", basic("__token__", team.tokens["ci"]))
    assert reply.status == 200, reply
    assert team.get("/simple/private-pkg/", team.as_user("member")).status == 200


def test_access_adding_a_user_keeps_the_others_logged_in(team: Team) -> None:
    """`users add` rewrites the file: the users whose line did not change keep their cache entry."""
    assert team.get("/simple/private-pkg/", team.as_user("member")).status == 200
    runs = team.app.auth.kdf_runs
    users = team.users_file.read_text()
    write_users(team.users_file.with_suffix(".new"), [User("new", hash_secret(SECRET))])
    team.users_file.write_text(users + team.users_file.with_suffix(".new").read_text())
    assert wait_for(lambda: team.get("/simple/private-pkg/", team.as_user("new")).status == 200, timeout=5)
    assert team.app.auth.kdf_runs == runs + 1  # the new user's login only
    assert team.get("/simple/private-pkg/", team.as_user("member")).status == 200
    assert team.app.auth.kdf_runs == runs + 1


@pytest.mark.parametrize("header", [
    "Bearer abc",
    "Basic",
    "Basic !!!not-base64!!!",
    "Basic " + base64.b64encode(b"no-colon").decode(),
    "Basic " + base64.b64encode(b":no-name").decode(),
    "Basic " + base64.b64encode(b"sponsor:team-secret-1\x00").decode(),
    "Basic " + base64.b64encode(b"spon\x00sor:team-secret-1").decode(),
    "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
    "Basic " + base64.b64encode(b"sponsor:" + b"x" * 10_000).decode(),
    "Basic " + "A" * 10_240,
    "Digest username=\"sponsor\"",
])
def test_access_malformed_authorization_is_a_clear_401(team: Team, header: str) -> None:
    reply = team.get("/simple/private-pkg/", header)
    assert reply.status == 401, reply
    assert reply.header("WWW-Authenticate") == CHALLENGE
    assert len(reply.body.splitlines()) == 1
    assert b"team-secret" not in reply.body


def test_access_secrets_never_reach_the_log(team: Team, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    team.get("/simple/private-pkg/", team.as_user("sponsor"))
    team.get("/simple/private-pkg/", basic("sponsor", "wrong-guess-123"))
    team.get("/simple/private-pkg/", basic("__token__", team.tokens["ci"]))
    assert SECRET not in caplog.text
    assert "wrong-guess-123" not in caplog.text
    assert team.tokens["ci"] not in caplog.text


def test_access_remote_user_is_set_for_the_access_log(team: Team) -> None:
    seen: list[Any] = []

    def spy(environ: dict[str, Any], start_response: Any) -> Any:
        result = team.app(environ, start_response)
        seen.append(environ.get("REMOTE_USER"))
        return result

    with ThreadedServer(spy) as server:
        request(server.url, "/simple/private-pkg/", headers={"Authorization": team.as_user("member")})
        request(server.url, "/simple/private-pkg/")
    assert seen == ["member", None]


# --------------------------------------------------------------------------- anonymous = "read"


def test_access_anonymous_read_keeps_todays_behaviour(
        make_config: ConfigMaker, data_dir: Path, tmp_path: Path, upstream_server: ThreadedServer) -> None:
    loaded, _tokens = make_team(make_config, data_dir, tmp_path, upstream_server, anonymous="read")
    with ThreadedServer(make_app(loaded)) as server:
        reply = request(server.url, "/simple/private-pkg/")
        assert reply.status == 200
        assert reply.header("Cache-Control") == "max-age=30, public"
        assert request(server.url, "/simple/public-pkg/").status == 200  # anonymous reads everything
        authed = request(server.url, "/simple/private-pkg/",
                         headers={"Authorization": basic("ci", "bad-one")})
        assert authed.status == 401  # wrong credentials are wrong whatever the policy
        # Set on purpose, "read" holds behind a proxy without trusted_proxy too.
        proxied = request(server.url, "/simple/private-pkg/", headers={"X-Forwarded-For": "192.0.2.1"})
        assert proxied.status == 200


@pytest.mark.parametrize(("anonymous", "status"), [
    ("", 401),  # the loopback default gives way behind a proxy
    ("read", 200),  # set on purpose: it holds
])
def test_access_proxy_headers_without_trusted_proxy_end_the_loopback_default(
        make_config: ConfigMaker, data_dir: Path, tmp_path: Path, upstream_server: ThreadedServer, *,
        anonymous: str, status: int) -> None:
    make_team(make_config, data_dir, tmp_path, upstream_server)
    loaded = config.load(str(make_config(access={"anonymous": anonymous})))
    assert loaded.access.anonymous == "read"
    with ThreadedServer(make_app(loaded)) as server:
        assert request(server.url, "/simple/private-pkg/").status == 200  # this host's users
        for header in ("X-Forwarded-For", "X-Sendfile-Type", "Forwarded", "X-Real-IP"):
            reply = request(server.url, "/simple/private-pkg/", headers={header: "192.0.2.1"})
            assert reply.status == status, header


# --------------------------------------------------------------------------- the real service


@pytest.mark.slow
def test_access_users_remove_takes_effect_on_the_running_server(make_config: ConfigMaker, data_dir: Path,
                                                                tmp_path: Path) -> None:
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    make_wheel(data_dir / "store" / "private-pkg", "private-pkg", "1.0")
    config_file = make_config(access={"anonymous": "none"})

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "pypi_insiders", "--config", str(config_file), *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                              stdin=subprocess.DEVNULL)

    added = cli("users", "add", "ci", "--token", "--read", "private-pkg")
    assert added.returncode == 0, added.stderr
    token = added.stdout.splitlines()[0]
    with serve_process(config_file) as served:
        assert "anonymous callers: none (set by access.anonymous)" in served.output()
        auth = {"Authorization": basic("__token__", token)}
        assert request(served.url, "/simple/private-pkg/", headers=auth).status == 200
        assert request(served.url, "/simple/private-pkg/").status == 401
        began = time.monotonic()
        assert cli("users", "remove", "ci").returncode == 0
        assert wait_for(lambda: request(served.url, "/simple/private-pkg/", headers=auth).status == 401,
                        timeout=10)
        print(f"removal took effect after {time.monotonic() - began:.2f} s")
        assert token not in served.output()


# --------------------------------------------------------------------------- PEP 708


def test_access_public_project_pages_carry_pep_708_tracks(make_config: ConfigMaker, data_dir: Path) -> None:
    from pypi_insiders.index.generate import Generator  # noqa: PLC0415

    make_wheel(data_dir / "store" / "public-pkg", "public-pkg", "9.9.1")
    make_wheel(data_dir / "store" / "private-pkg", "private-pkg", "1.0")
    loaded = config.load(str(make_config(
        upstream={"url": "http://user:pw@127.0.0.1:9/simple/"}, access={"public_projects": ["public_pkg"]})))
    generator = Generator.from_config(loaded)
    try:
        generator.generate_all()
        simple = data_dir / "index" / "simple"
        document = json.loads((simple / "public-pkg" / "index.json").read_bytes())
        assert document["tracks"] == ["http://127.0.0.1:9/simple/public-pkg/"]  # no credentials
        assert document["meta"]["api-version"] == "1.2"
        html = (simple / "public-pkg" / "index.html").read_text()
        assert '<meta name="pypi:tracks" content="http://127.0.0.1:9/simple/public-pkg/">' in html
        assert "tracks" not in json.loads((simple / "private-pkg" / "index.json").read_bytes())
        generator.reconfigure(config.load(str(make_config(upstream={"url": "http://127.0.0.1:9/simple/"}))))
        assert "tracks" not in json.loads((simple / "public-pkg" / "index.json").read_bytes())
    finally:
        generator.close()


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(("server", "access", "anonymous", "reason"), [
    ({"listen": "127.0.0.1:0"}, {}, "read", "loopback only"),
    ({"listen": "[::1]:0"}, {}, "read", "loopback only"),
    ({"listen": "0.0.0.0:31411"}, {}, "none", "listens on 0.0.0.0, beyond loopback"),
    ({"listen": "127.0.0.1:0", "trusted_proxy": "127.0.0.1"}, {}, "none", "server.trusted_proxy"),
    ({"listen": "0.0.0.0:31411"}, {"anonymous": "read"}, "read", "set by access.anonymous"),
])
def test_access_anonymous_default_follows_where_the_index_listens(
        make_config: ConfigMaker, server: dict[str, str], access: dict[str, str], anonymous: str,
        reason: str) -> None:
    loaded = config.load(str(make_config(server=server, access=access)))
    assert loaded.access.anonymous == anonymous
    assert reason in loaded.access.reason


def test_access_listen_override_decides_the_default_too(make_config: ConfigMaker) -> None:
    loaded = config.with_overrides(config.load(str(make_config())), listen="0.0.0.0:8080")
    assert loaded.access.anonymous == "none"


@pytest.mark.parametrize(("access", "message"), [
    ({"anonymous": "all"}, "access.anonymous: must be one of 'read', 'none', got 'all'"),
    ({"public_projects": "mkdocs"}, "access.public_projects: expected an array"),
    ({"public_projects": ["ok", "bad name"]}, "access.public_projects[1]: not a project name: 'bad name'"),
    ({"anonymus": "none"}, "access.anonymus: unknown key (did you mean 'anonymous'?)"),
])
def test_access_config_errors_name_the_key(make_config: ConfigMaker, access: dict[str, Any],
                                           message: str) -> None:
    with pytest.raises(ConfigError) as error:
        config.load(str(make_config(access=access)))
    assert any(message in problem for problem in error.value.problems), error.value.problems


def test_access_check_config_says_which_policy_and_why(make_config: ConfigMaker,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from pypi_insiders import cli  # noqa: PLC0415

    path = make_config(server={"listen": "0.0.0.0:0"}, access={"public_projects": ["Public_Pkg"]})
    assert cli.main(["--config", str(path), "check-config"]) == 0
    out = capsys.readouterr().out
    assert "anonymous: none (default: the index listens on 0.0.0.0, beyond loopback)" in out
    assert "public_projects: public-pkg" in out


def test_access_status_mirror_section_for_whoever_may_see_status(
        team: Team, make_config: ConfigMaker) -> None:
    """The mirror's numbers name no private project: every caller shown /status sees them, a
    caller refused /status sees nothing of them."""
    loaded = config.load(str(make_config(access={"anonymous": "none"},
                                         upstream={"url": team.upstream + "simple/", "fallback": "mirror"})))
    team.app.reconfigure(loaded)
    with refreshing(loaded):
        sponsor = team.as_user("sponsor")
        assert wait_for(lambda: "mirror" in json.loads(team.get("/status.json", sponsor).body))
        for user in ("sponsor", "member", "ci"):
            assert json.loads(team.get("/status.json", team.as_user(user)).body)["mirror"]["hits"] == 0, user
            assert b"<h1>Mirror</h1>" in team.get("/status", team.as_user(user)).body, user
        refused = team.get("/status.json")
        assert refused.status == 401
        assert b"hits" not in refused.body
