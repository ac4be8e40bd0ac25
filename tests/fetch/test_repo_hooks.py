"""`pypi-insiders repos hook KEY`: URL, a secret made once, the drop-in naming it, and a delivery
signed with it accepted by a real server."""

from __future__ import annotations

from pathlib import Path

import pytest

from pypi_insiders import config
from pypi_insiders.cli import main
from pypi_insiders.web.app import make_app
from tests.conftest import ConfigMaker
from tests.support import git_fixtures as g
from tests.support import hook_fixtures as h
from tests.support.server_fixtures import ThreadedServer, request


def test_repos_hook_makes_the_secret_once_and_names_it(make_config: ConfigMaker, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    repo = g.init_repo(tmp_path / "git" / "team" / "hooked", g.intree_files("hooked"))
    path = make_config(webhooks={"enabled": True})
    assert main(["--config", str(path), "repos", "add", str(repo)]) == 0
    capsys.readouterr()
    assert main(["--config", str(path), "repos", "hook", "hooked"]) == 0
    out = capsys.readouterr().out
    assert "URL:    http://127.0.0.1:0/-/hooks/hooked\n" in out
    secret = out.split("secret: ", 1)[1].split("\n", 1)[0]
    assert len(secret) == 64
    assert 'added webhook_secret = "hook-hooked"' in out
    for forge in ("GitHub:", "GitLab:", "Forgejo/Gitea:", "Bitbucket:"):
        assert forge in out
    loaded = config.load(str(path))
    hooked = loaded.repo("hooked")
    assert hooked is not None
    assert hooked.webhook_secret == "hook-hooked"
    secret_file = loaded.webhooks.secrets_dir / "hook-hooked"
    assert secret_file.stat().st_mode & 0o777 == 0o600

    public = "https://index.example.org/"
    assert main(["--config", str(path), "repos", "hook", "hooked", "--url", public]) == 0
    again = capsys.readouterr().out
    assert secret not in again
    assert "URL:    https://index.example.org/-/hooks/hooked\n" in again
    assert "not shown again" in again

    with ThreadedServer(make_app(loaded)) as server:
        headers, body = h.github("push", h.github_tag_push(), secret=secret)
        reply = request(server.url, "/-/hooks/hooked", "POST", headers, body=body)
    assert (reply.status, reply.body) == (202, b"queued\n")


def test_repos_hook_for_a_table_in_the_config_says_what_to_add(make_config: ConfigMaker,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = make_config(repos={"a/b": {"url": "file:///r"}})
    assert main(["--config", str(path), "repos", "hook", "a/b"]) == 0
    out = capsys.readouterr().out
    assert f'add webhook_secret = "hook-a-b" to [repos."a/b"] in {path}' in out
    assert "webhooks are off" in out
    assert "URL:    http://127.0.0.1:0/-/hooks/a/b\n" in out


def test_repos_hook_unknown_repository_is_one_line(make_config: ConfigMaker,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(make_config()), "repos", "hook", "nope"]) == 2
    err = capsys.readouterr().err
    assert err == "pypi-insiders: unknown repository 'nope' (see `pypi-insiders repos list`)\n"
