"""The `repos add|list|remove` commands, run as the administrator runs them: a subprocess."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest

from pypi_insiders import config
from pypi_insiders.fetch.repos import parse_source, service_cannot_read
from tests.conftest import ConfigMaker
from tests.support.git_fixtures import cli_env, init_repo


def run(config_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pypi_insiders", "-c", str(config_path), "repos", *args],
                          capture_output=True, text=True, timeout=60, env=cli_env(), check=False)


@pytest.mark.parametrize(("source", "key", "url", "dist"), [
    ("squidfunk/mkdocs-material-insiders", "squidfunk/mkdocs-material-insiders",
     "https://github.com/squidfunk/mkdocs-material-insiders.git", None),
    ("pawamoy-insiders/griffe:griffe", "pawamoy-insiders/griffe",
     "https://github.com/pawamoy-insiders/griffe.git", "griffe"),
    ("https://git.example.com/team/proj.git", "team/proj", "https://git.example.com/team/proj.git", None),
    ("ssh://git@git.example.com:2222/team/proj.git", "team/proj",
     "ssh://git@git.example.com:2222/team/proj.git", None),
    ("git@git.example.com:team/proj.git", "team/proj", "git@git.example.com:team/proj.git", None),
    ("file:///srv/git/proj.git", "git/proj", "file:///srv/git/proj.git", None),
    ("/srv/git/proj.git", "proj", "/srv/git/proj.git", None),
])
def test_parse_source_accepts_every_form(source: str, key: str, url: str, dist: str | None) -> None:
    assert parse_source(source) == (key, url, dist)


def test_repos_add_writes_a_dropin_that_config_loads(make_config: ConfigMaker, tmp_path: Path) -> None:
    path = make_config()
    done = run(path, "add", "team/proj:Team-Proj", "--subdirectory", "python", "--tag-pattern", "^v",
               "--build", "latest", "--min-version", "1.2", "--credential", "team-token")
    assert done.returncode == 0, done.stderr
    dropin = tmp_path / "repos.d" / "team-proj.toml"
    assert str(dropin) in done.stdout
    assert tomllib.loads(dropin.read_text())["repos"]["team/proj"]["url"] == "https://github.com/team/proj.git"
    repo = config.load(str(path)).repos[0]
    assert (repo.key, repo.distribution, repo.subdirectory, repo.build) == (
        "team/proj", "team-proj", "python", "latest")
    assert repo.source_file == dropin


def test_repos_add_shorthand_without_a_credential_uses_ssh_with_the_users_keys(
        make_config: ConfigMaker, tmp_path: Path) -> None:
    """As the original tool did; a credential keeps HTTPS with its token (the test above)."""
    done = run(make_config(), "add", "team/insiders:team-pkg")
    assert done.returncode == 0, done.stderr
    assert "(git@github.com:team/insiders.git)" in done.stdout
    table = tomllib.loads((tmp_path / "repos.d" / "team-insiders.toml").read_text())["repos"]["team/insiders"]
    assert table == {"url": "git@github.com:team/insiders.git", "distribution": "team-pkg"}


def test_repos_add_makes_a_local_path_absolute(make_config: ConfigMaker, tmp_path: Path) -> None:
    path = make_config()
    init_repo(tmp_path / "work" / "proj", {"README": "a project\n"})
    done = subprocess.run([sys.executable, "-m", "pypi_insiders", "-c", str(path), "repos", "add", "./proj"],
                          capture_output=True, text=True, timeout=60, env=cli_env(), check=False,
                          cwd=tmp_path / "work")
    assert done.returncode == 0, done.stderr
    assert config.load(str(path)).repo("proj") is not None
    assert config.load(str(path)).repos[0].url == str(tmp_path / "work" / "proj")


@pytest.mark.parametrize(("args", "message"), [
    (["add", "team/proj", "--tag-pattern", "(["], 'repos."team/proj".tag_pattern: not a regular expression'),
    (["add", "team/proj", "--min-version", "one"], "min_version: not a PEP 440 version: 'one'"),
    (["add", "team/proj", "--credential", "../etc/shadow"], "credential names are file names"),
    (["add", "ftp://host/team/proj"], "unsupported URL scheme 'ftp'"),
    (["add", "https://me:hunter2@host/team/proj"], "https://host/team/proj: a credential in the URL"),
    (["add", "https://hunter2@host/team/proj"], "https://host/team/proj: a credential in the URL"),
    (["add", "http://hunter2:@host/team/proj"], "put the token in a file in"),
    (["add", "ssh://git:hunter2@host/team/proj"], "ssh://git@host/team/proj: a credential in the URL"),
    (["add", "not a source"], "not NAMESPACE/PROJECT[:DISTRIBUTION], a git URL or a local path"),
    (["add", "team/proj:one", "two"], "names distribution 'one', the argument says 'two'"),
    (["remove", "nobody/nothing"], "unknown repository 'nobody/nothing'"),
    (["add", "/nonexistent/proj.git"], "/nonexistent/proj.git: no such directory"),
    (["add", "file:///nonexistent/proj.git"], "/nonexistent/proj.git: no such directory"),
    (["add", "/"], "/: not a git repository"),
])
def test_repos_refuses_bad_entries_with_one_line(make_config: ConfigMaker, tmp_path: Path,
                                                 args: list[str], message: str) -> None:
    done = run(make_config(), *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "hunter2" not in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "repos.d").exists() or not any((tmp_path / "repos.d").iterdir())


def test_repos_add_refuses_a_key_that_exists(make_config: ConfigMaker, tmp_path: Path) -> None:
    path = make_config(repos={"team/proj": {"url": "https://git.example.com/team/proj.git"}})
    done = run(path, "add", "team/proj")
    assert done.returncode == 2
    assert done.stderr.strip() == f"pypi-insiders: repository 'team/proj' already exists in {path}"
    assert run(path, "add", "https://git.example.com/other/thing.git").returncode == 0
    again = run(path, "add", "ssh://git@elsewhere/other/thing.git")
    assert f"already exists in {tmp_path / 'repos.d' / 'other-thing.toml'}" in again.stderr


def test_repos_list_and_remove(make_config: ConfigMaker, tmp_path: Path) -> None:
    path = make_config(repos={"hand/written": {"url": "https://git.example.com/hand/written.git"}})
    assert run(path, "add", "team/proj", "--credential", "tok").returncode == 0
    listed = json.loads(run(path, "list", "--json").stdout)
    assert [(r["key"], r["defined_in"]) for r in listed] == [
        ("hand/written", str(path)), ("team/proj", str(tmp_path / "repos.d" / "team-proj.toml"))]
    listing = run(path, "list").stdout
    assert "team/proj  https://github.com/team/proj.git  build=new  credential=tok" in listing
    refused = run(path, "remove", "hand/written")
    assert refused.returncode == 2
    assert f"defined in {path}; edit that file" in refused.stderr
    removed = run(path, "remove", "team/proj")
    assert removed.returncode == 0, removed.stderr
    assert not (tmp_path / "repos.d" / "team-proj.toml").exists()
    assert [r.key for r in config.load(str(path)).repos] == ["hand/written"]


def test_repos_list_says_when_nothing_is_watched(make_config: ConfigMaker) -> None:
    done = run(make_config(), "list")
    assert done.returncode == 0
    assert done.stdout.startswith("no repositories watched")


def test_repos_add_and_remove_say_when_the_dropin_directory_is_not_writable(make_config: ConfigMaker,
                                                                            tmp_path: Path) -> None:
    path = make_config(fetch={"repos_dir": "/proc/pypi-insiders-repos.d"})  # not creatable, even by root
    done = run(path, "add", "team/proj")
    assert done.returncode == 2
    assert done.stderr.startswith("pypi-insiders: fetch.repos_dir: cannot write /proc/pypi-insiders-repos.d/")
    assert len(done.stderr.strip().splitlines()) == 1


NOBODY = 65534  # a user that owns none of the test's files, as the service user owns none of a user's


@pytest.mark.parametrize(("modes", "reason"), [
    ({"outer": 0o755, "outer/repo": 0o755}, None),
    ({"outer": 0o755, "outer/repo": 0o700}, r"it may not read .*/outer/repo \(mode drwx------\)"),
    ({"outer": 0o750, "outer/repo": 0o755}, r"it may not enter .*/outer \(mode drwxr-x---\)"),
    ({"outer": 0o751, "outer/repo": 0o755}, None),  # search is all a parent needs
])
def test_repos_service_cannot_read_names_the_blocking_directory(modes: dict[str, int],
                                                                reason: str | None) -> None:
    # pytest's own temporary directories are private: this one is open to all, as /srv would be
    base = Path(tempfile.mkdtemp(prefix="repos-modes-", dir="/var/tmp"))
    try:
        base.chmod(0o755)
        for name, mode in modes.items():
            (base / name).mkdir()
            (base / name).chmod(mode)
        why = service_cannot_read(base / "outer" / "repo", NOBODY, {NOBODY})
    finally:
        shutil.rmtree(base)
    assert (why is None) if reason is None else re.fullmatch(reason, why or ""), why


def test_repos_service_cannot_read_a_home_directory() -> None:
    why = service_cannot_read(Path("/home/alice/src/proj"), NOBODY, {NOBODY})
    assert why is not None
    assert "ProtectHome=yes" in why
