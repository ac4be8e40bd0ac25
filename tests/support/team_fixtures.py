"""The team that reads the index in-process: anonymous = "none", users with read scopes, a public
project, and an upstream that also has it.

`private-pkg` is local only; `public-pkg` is an Insiders build of a public project (listed in
`access.public_projects`), whose public release upstream serves; `remote-only` is upstream's
alone. The users file holds "sponsor" (reads everything), "member" (reads Private_Pkg only) and
"ci" (a token that reads public-pkg only). test_access.py holds the rules this team proves;
the access log and the nginx front reuse the team.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pypi_insiders import config
from pypi_insiders.web.passwords import hash_secret, make_token
from pypi_insiders.web.scopes import parse_scope
from pypi_insiders.web.users import User
from tests.conftest import ConfigMaker
from tests.support.distfiles import make_wheel
from tests.support.server_fixtures import FakeUpstream, Reply, ThreadedServer, request, write_index

SECRET = "team-secret-1"
PRIVATE_WHEEL = "private_pkg-1.0-py3-none-any.whl"
PUBLIC_WHEEL = "public_pkg-9.9.1-py3-none-any.whl"
CHALLENGE = 'Basic realm="pypi-insiders"'


def write_users(path: Path, users: list[User]) -> None:
    path.write_text("".join(user.line() + "\n" for user in users))


@contextmanager
def team_upstream() -> Iterator[ThreadedServer]:
    """Upstream on loopback: public-pkg's public release and a project only upstream has."""
    fake = FakeUpstream(projects={"public-pkg": {"public_pkg-9.9-py3-none-any.whl": b"public build"},
                                  "remote-only": {"remote_only-1.0-py3-none-any.whl": b"remote"}})
    with ThreadedServer(fake.app) as server:
        yield server


def make_team(make_config: ConfigMaker, data_dir: Path, tmp_path: Path, upstream: ThreadedServer,
              *, anonymous: str = "none", fallback: str = "redirect") -> tuple[config.Config, dict[str, str]]:
    """The team's store, index and users file, and its config; returns it with the tokens by user."""
    store = data_dir / "store"
    make_wheel(store / "private-pkg", "private-pkg", "1.0")
    make_wheel(store / "public-pkg", "public-pkg", "9.9.1")
    write_index(data_dir / "index", {"private-pkg": [f"private-pkg/{PRIVATE_WHEEL}"],
                                     "public-pkg": [f"public-pkg/{PUBLIC_WHEEL}"]})
    metadata = data_dir / "index" / "packages" / "private-pkg" / f"{PRIVATE_WHEEL}.metadata"
    metadata.parent.mkdir(parents=True)
    metadata.write_text("Metadata-Version: 2.1\nName: private-pkg\nVersion: 1.0\n")
    tokens = {"ci": make_token("ci")}
    write_users(tmp_path / "users", [
        User("sponsor", hash_secret(SECRET), read=parse_scope("*"), upload=parse_scope("")),
        User("member", hash_secret(SECRET), read=parse_scope("Private_Pkg"), upload=parse_scope("")),
        User("ci", hash_secret(tokens["ci"]), read=parse_scope("public-pkg"), upload=parse_scope(""),
             token=True),
    ])
    loaded = config.load(str(make_config(
        upstream={"url": upstream.url + "simple/", "fallback": fallback, "timeout": 5.0},
        access={"anonymous": anonymous, "public_projects": ["Public.Pkg"]})))
    return loaded, tokens


def request_as(url: str, path: str, auth: str | None = None, method: str = "GET", **headers: str) -> Reply:
    """`request` with `auth` as the Authorization header; header keywords spell dashes as `_`."""
    sent = {k.replace("_", "-"): v for k, v in headers.items()}
    if auth is not None:
        sent["Authorization"] = auth
    return request(url, path, method, headers=sent)
