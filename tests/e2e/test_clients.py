"""Every client with its ordinary way of sending credentials, against a real `pypi-insiders serve`.

The index runs with `[access] anonymous = "none"`; `public-pkg` is an Insiders build of a public
project (`public_projects`), whose public release a second loopback server plays upstream.
A sponsor's client must get the Insiders build and the private project; a contributor's, with
the same requirements and no credentials, the public release (and no private project). Each
client runs with HOME and its config in a temp directory, never the host's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.client_fixtures import (
    LOCAL,
    PRIVATE,
    PUBLIC,
    Team,
    client_env,
    installed,
    run,
    team_server,
)
from tests.support.distfiles import make_wheel
from tests.support.server_fixtures import VENV_BIN, basic, request, twine_program

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    with team_server(tmp_path_factory.mktemp("team")) as served:
        yield served


# --------------------------------------------------------------------------- pip


def pip(index: str, home: Path, *requirements: str, ok: bool = True) -> tuple[set[str], str]:
    target = home / "target"
    result = run([str(VENV_BIN / "python"), "-m", "pip", "install", "--no-cache-dir", "--no-input",
                  "--disable-pip-version-check", "--index-url", index, "--target", str(target),
                  "--only-binary", ":all:", *requirements], home, client_env(home), ok=ok)
    return installed(target), result.stdout + result.stderr


def test_clients_pip_sponsor_with_credentials_in_the_url(team: Team, tmp_path: Path) -> None:
    got, _out = pip(team.with_credentials("__token__", team.token), tmp_path, "public-pkg", "private-pkg")
    assert got == {LOCAL, PRIVATE}


def test_clients_pip_sponsor_with_netrc(team: Team, tmp_path: Path) -> None:
    netrc = tmp_path / ".netrc"
    netrc.write_text(f"machine 127.0.0.1\nlogin sponsor-ci\npassword {team.token}\n")
    netrc.chmod(0o600)
    got, _out = pip(team.index, tmp_path, "public-pkg", "private-pkg")
    assert got == {LOCAL, PRIVATE}


def test_clients_pip_contributor_gets_the_public_release(team: Team, tmp_path: Path) -> None:
    got, _out = pip(team.index, tmp_path, "public-pkg")
    assert got == {PUBLIC}
    refused, out = pip(team.index, tmp_path / "again", "private-pkg", ok=False)
    assert refused == set()
    assert "No matching distribution found for private-pkg" in out  # pip takes a 401 for no project


def test_clients_pip_without_credentials_asks_for_a_user_name(team: Team, tmp_path: Path) -> None:
    """What the README says of a 401: pip asks for a user name; without a terminal to answer,
    pip 23 fails with EOFError; only with PIP_NO_INPUT=1 (or --no-input) does it say "not found"."""
    env = {key: value for key, value in client_env(tmp_path).items() if key != "PIP_NO_INPUT"}
    argv = [str(VENV_BIN / "python"), "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check",
            "--index-url", team.index, "--target", str(tmp_path / "target"), "private-pkg"]
    asked = run(argv, tmp_path, env, ok=False)
    assert asked.returncode != 0
    assert "User for 127.0.0.1:" in asked.stdout
    assert "EOFError" in asked.stdout + asked.stderr
    quiet = run(argv, tmp_path, {**env, "PIP_NO_INPUT": "1"}, ok=False)
    assert "User for" not in quiet.stdout
    assert "No matching distribution found for private-pkg" in quiet.stdout + quiet.stderr


def test_clients_pip_read_scope_outside_is_refused(team: Team, tmp_path: Path) -> None:
    reader = team.with_credentials("reader", team.readonly)
    got, _out = pip(reader, tmp_path, "public-pkg")
    assert got == {LOCAL}  # a reader of public-pkg gets the Insiders build
    refused, out = pip(reader, tmp_path / "p", "private-pkg", ok=False)
    assert refused == set()
    assert "No matching distribution found for private-pkg" in out  # pip says no more of a 403
    answer = request(team.served.url, "/simple/private-pkg/",
                     headers={"Authorization": basic("reader", team.readonly)})
    assert answer.status == 403


# --------------------------------------------------------------------------- uv


def uv_venv(home: Path) -> Path:
    venv = home / "venv"
    run([str(VENV_BIN / "uv"), "venv", "--no-config", "--python", str(VENV_BIN / "python"), str(venv)],
        home, client_env(home))
    return venv


def test_clients_uv_sponsor_with_credentials_in_the_url(team: Team, tmp_path: Path) -> None:
    venv = uv_venv(tmp_path)
    run([str(VENV_BIN / "uv"), "pip", "install", "--no-config", "--python", str(venv / "bin" / "python"),
         "--index-url", team.with_credentials("__token__", team.token), "public-pkg", "private-pkg"],
        tmp_path, client_env(tmp_path))
    assert installed(venv) == {LOCAL, PRIVATE}


def test_clients_uv_contributor_gets_the_public_release(team: Team, tmp_path: Path) -> None:
    venv = uv_venv(tmp_path)
    run([str(VENV_BIN / "uv"), "pip", "install", "--no-config", "--python", str(venv / "bin" / "python"),
         "--index-url", team.index, "public-pkg"], tmp_path, client_env(tmp_path))
    assert installed(venv) == {PUBLIC}


def _uv_project(directory: Path, index: str, *, always: bool = True) -> Path:
    directory.mkdir(parents=True)
    (directory / "pyproject.toml").write_text(
        '[project]\nname = "app"\nversion = "0"\nrequires-python = ">=3.11"\n'
        'dependencies = ["public-pkg"]\n\n[tool.uv]\npackage = false\n\n'
        f'[[tool.uv.index]]\nname = "insiders"\nurl = "{index}"\ndefault = true\n'
        + ('authenticate = "always"\n' if always else ""))
    return directory


def test_clients_uv_named_index_with_credentials_from_the_environment(team: Team, tmp_path: Path) -> None:
    project = _uv_project(tmp_path / "app", team.index)
    env = client_env(tmp_path, {"UV_INDEX_INSIDERS_USERNAME": "__token__",
                                "UV_INDEX_INSIDERS_PASSWORD": team.token})
    env.pop("UV_NO_CONFIG", None)  # the project's own [[tool.uv.index]] is the point
    run([str(VENV_BIN / "uv"), "sync", "--python", str(VENV_BIN / "python")], project, env)
    assert installed(project / ".venv") == {LOCAL}
    lock = (project / "uv.lock").read_text()
    assert "9.9.1" in lock
    assert team.token not in lock


def test_clients_uv_named_index_without_credentials_fails_clearly(team: Team, tmp_path: Path) -> None:
    """authenticate = "always": uv refuses to go on without credentials instead of taking upstream's."""
    project = _uv_project(tmp_path / "app", team.index)
    env = client_env(tmp_path)
    env.pop("UV_NO_CONFIG", None)
    result = run([str(VENV_BIN / "uv"), "sync", "--python", str(VENV_BIN / "python")], project, env, ok=False)
    assert result.returncode != 0
    assert not (project / ".venv").exists() or PUBLIC not in installed(project / ".venv")


def test_clients_uv_named_index_sends_credentials_from_the_environment_up_front(
        team: Team, tmp_path: Path) -> None:
    """Without authenticate = "always" too: uv sends an index's credentials on the first request,
    so a sponsor is never answered as a contributor (a public project's upstream release)."""
    project = _uv_project(tmp_path / "app", team.index, always=False)
    env = client_env(tmp_path, {"UV_INDEX_INSIDERS_USERNAME": "__token__",
                                "UV_INDEX_INSIDERS_PASSWORD": team.token})
    env.pop("UV_NO_CONFIG", None)
    run([str(VENV_BIN / "uv"), "sync", "--python", str(VENV_BIN / "python")], project, env)
    assert installed(project / ".venv") == {LOCAL}


def test_clients_uv_named_index_contributor_gets_the_public_release(team: Team, tmp_path: Path) -> None:
    """The same project file, no credentials in the environment: upstream's release."""
    project = _uv_project(tmp_path / "app", team.index, always=False)
    env = client_env(tmp_path)
    env.pop("UV_NO_CONFIG", None)
    run([str(VENV_BIN / "uv"), "sync", "--python", str(VENV_BIN / "python")], project, env)
    assert installed(project / ".venv") == {PUBLIC}
    assert "9.9.1" not in (project / "uv.lock").read_text()


# --------------------------------------------------------------------------- twine


def test_clients_twine_read_only_token_is_refused_and_nothing_written(team: Team, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "dist", "public-pkg", "9.9.2")
    store = team.config_file.parent / "data" / "store"
    before = sorted(str(p.relative_to(store)) for p in store.rglob("*"))
    env = client_env(tmp_path, {"TWINE_NON_INTERACTIVE": "1", "TWINE_USERNAME": "__token__",
                                "TWINE_PASSWORD": team.readonly})  # as a CI job passes them: not in argv
    result = run([twine_program(), "upload", "--disable-progress-bar", "--repository-url", team.served.url,
                  str(wheel)], tmp_path, env, ok=False)
    assert result.returncode != 0
    assert "403" in result.stdout + result.stderr
    assert team.readonly not in result.stdout + result.stderr
    assert sorted(str(p.relative_to(store)) for p in store.rglob("*")) == before


def test_clients_secrets_never_reach_the_process_list_of_the_server(team: Team) -> None:
    cmdline = Path(f"/proc/{team.served.process.pid}/cmdline").read_bytes()
    assert team.token.encode() not in cmdline
    assert team.readonly.encode() not in cmdline
    assert b"serve" in cmdline  # it is the server's
