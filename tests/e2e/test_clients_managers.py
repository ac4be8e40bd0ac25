"""pdm, poetry and pipenv, each with its ordinary way of sending credentials, against the team index
of tests/support/client_fixtures.py (anonymous = "none", `public-pkg` a public project, `private-pkg` local).

A sponsor's project (its token in the environment, never in a project file) must lock and install
the Insiders build and the private project; a contributor's, the same project files without
credentials, the public release, and no private project. Each tool runs from its own venv of
.ci/deps, with HOME, config, cache and virtualenvs in a temp directory, only our loopback index as
a source, and a dead proxy for anything else: a request to any other host fails the test.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.client_fixtures import LOCAL, PRIVATE, PUBLIC, Team, client_env, run, team_server
from tests.support.server_fixtures import client_program

pytestmark = pytest.mark.slow

# The project's interpreter: Debian's own, never the venv running the tests (a tool handed a venv's
# python would install into that venv).
BASE_PYTHON = str(Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}")
SEEDS = ("pip-", "setuptools-", "wheel-")  # what a fresh virtualenv holds before any install


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    with team_server(tmp_path_factory.mktemp("team")) as served:
        yield served


@pytest.fixture(scope="module")
def dead_proxy() -> Iterator[str]:
    """A loopback port bound and never listening: every connection through it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def tool_env(home: Path, proxy: str, extra: dict[str, str]) -> dict[str, str]:
    env = client_env(home, {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
                            "VIRTUALENV_NO_PERIODIC_UPDATE": "1"})
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = env[name.lower()] = proxy
    env.update(extra)
    return env


def packages(venv: Path) -> set[str]:
    """The distributions installed in a virtualenv, less its seed packages."""
    found = venv.glob("lib/python3*/site-packages/*.dist-info")
    return {p.name for p in found if not p.name.startswith(SEEDS)}


def project(directory: Path, text: str, name: str = "pyproject.toml") -> Path:
    directory.mkdir(parents=True)
    (directory / name).write_text(text)
    return directory


# --------------------------------------------------------------------------- pdm

PDM_PROJECT = """\
[project]
name = "app"
version = "0"
requires-python = ">=3.11"
dependencies = [{deps}]

[tool.pdm]
distribution = false

[[tool.pdm.source]]
name = "pypi"  # replaces the default index
url = "{index}"
"""


def pdm(home: Path, proxy: str, credentials: dict[str, str] | None = None) -> tuple[str, dict[str, str]]:
    env = tool_env(home, proxy, {"PDM_CONFIG_FILE": str(home / "pdm" / "config.toml"),
                                 "PDM_CACHE_DIR": str(home / "pdm" / "cache"),
                                 "PDM_LOG_DIR": str(home / "pdm" / "log"),
                                 "PDM_CHECK_UPDATE": "false", "PDM_VENV_BACKEND": "venv",
                                 **(credentials or {})})
    return client_program("pdm"), env


def test_clients_pdm_sponsor_with_source_credentials_from_the_environment(
        team: Team, dead_proxy: str, tmp_path: Path) -> None:
    app = project(tmp_path / "app", PDM_PROJECT.format(deps='"public-pkg", "private-pkg"', index=team.index))
    program, env = pdm(tmp_path, dead_proxy,
                       {"PDM_PYPI_USERNAME": "__token__", "PDM_PYPI_PASSWORD": team.token})
    run([program, "venv", "create", BASE_PYTHON], app, env)
    run([program, "install"], app, env)
    assert packages(app / ".venv") == {LOCAL, PRIVATE}
    lock = (app / "pdm.lock").read_text()
    assert 'version = "9.9.1"' in lock
    assert team.token not in lock + (app / "pyproject.toml").read_text()


def test_clients_pdm_contributor_gets_the_public_release(team: Team, dead_proxy: str, tmp_path: Path) -> None:
    app = project(tmp_path / "app", PDM_PROJECT.format(deps='"public-pkg"', index=team.index))
    program, env = pdm(tmp_path, dead_proxy)
    run([program, "venv", "create", BASE_PYTHON], app, env)
    run([program, "install"], app, env)
    assert packages(app / ".venv") == {PUBLIC}
    refused = run([program, "add", "private-pkg"], app, env, ok=False)
    assert refused.returncode != 0
    assert "Unable to find candidates for private-pkg" in refused.stdout + refused.stderr
    assert packages(app / ".venv") == {PUBLIC}


# --------------------------------------------------------------------------- poetry

POETRY_PROJECT = """\
[project]
name = "app"
version = "0"
requires-python = ">=3.11"
dependencies = [{deps}]

[tool.poetry]
package-mode = false
"""


def poetry(home: Path, proxy: str, app: Path, index: str,
           credentials: dict[str, str] | None = None) -> tuple[str, dict[str, str]]:
    """Poetry with the index added as its primary source (which leaves out the default index)."""
    env = tool_env(home, proxy, {"POETRY_CONFIG_DIR": str(home / "poetry" / "config"),
                                 "POETRY_CACHE_DIR": str(home / "poetry" / "cache"),
                                 "POETRY_DATA_DIR": str(home / "poetry" / "data"),
                                 "POETRY_VIRTUALENVS_IN_PROJECT": "true",
                                 "POETRY_VIRTUALENVS_OPTIONS_NO_PIP": "true",
                                 "POETRY_NO_INTERACTION": "1", **(credentials or {})})
    program = client_program("poetry")
    run([program, "source", "add", "--priority=primary", "insiders", index], app, env)
    run([program, "env", "use", BASE_PYTHON], app, env)
    return program, env


def test_clients_poetry_sponsor_with_http_basic_from_the_environment(
        team: Team, dead_proxy: str, tmp_path: Path) -> None:
    app = project(tmp_path / "app", POETRY_PROJECT.format(deps='"public-pkg", "private-pkg"'))
    program, env = poetry(tmp_path, dead_proxy, app, team.index,
                          {"POETRY_HTTP_BASIC_INSIDERS_USERNAME": "__token__",
                           "POETRY_HTTP_BASIC_INSIDERS_PASSWORD": team.token})
    run([program, "install"], app, env)
    assert packages(app / ".venv") == {LOCAL, PRIVATE}
    lock = (app / "poetry.lock").read_text()
    assert 'version = "9.9.1"' in lock
    assert 'reference = "insiders"' in lock
    assert team.token not in lock + (app / "pyproject.toml").read_text()


def test_clients_poetry_contributor_gets_the_public_release(
        team: Team, dead_proxy: str, tmp_path: Path) -> None:
    app = project(tmp_path / "app", POETRY_PROJECT.format(deps='"public-pkg"'))
    program, env = poetry(tmp_path, dead_proxy, app, team.index)
    run([program, "install"], app, env)
    assert packages(app / ".venv") == {PUBLIC}
    refused = run([program, "add", "private-pkg"], app, env, ok=False)
    assert refused.returncode != 0
    assert "Authorization error accessing" in refused.stdout + refused.stderr  # our 401
    assert packages(app / ".venv") == {PUBLIC}


# --------------------------------------------------------------------------- pipenv

PIPFILE = """\
[[source]]
name = "insiders"
url = "${{INSIDERS_INDEX_URL}}"
verify_ssl = false

[packages]
{packages}
"""


def pipenv(home: Path, index: str, proxy: str) -> tuple[str, dict[str, str]]:
    """pipenv with the Pipfile's source URL taken from INSIDERS_INDEX_URL, credentials or not."""
    env = tool_env(home, proxy, {"WORKON_HOME": str(home / "virtualenvs"),
                                 "PIPENV_CACHE_DIR": str(home / "pipenv-cache"),
                                 "PIPENV_VENV_IN_PROJECT": "1", "PIPENV_IGNORE_VIRTUALENVS": "1",
                                 "PIPENV_YES": "1", "PIPENV_NOSPIN": "1", "PIPENV_DONT_LOAD_ENV": "1",
                                 "INSIDERS_INDEX_URL": index})
    return client_program("pipenv"), env


def test_clients_pipenv_sponsor_with_credentials_in_the_source_url(
        team: Team, dead_proxy: str, tmp_path: Path) -> None:
    app = project(tmp_path / "app", PIPFILE.format(packages='public-pkg = "*"\nprivate-pkg = "*"'), "Pipfile")
    program, env = pipenv(tmp_path, team.with_credentials("__token__", team.token), dead_proxy)
    run([program, "install", "--python", BASE_PYTHON], app, env)
    assert packages(app / ".venv") == {LOCAL, PRIVATE}
    text = (app / "Pipfile.lock").read_text()
    lock = json.loads(text)
    assert lock["default"]["public-pkg"]["version"] == "==9.9.1"
    assert lock["_meta"]["sources"][0]["url"] == "${INSIDERS_INDEX_URL}"  # kept unexpanded
    assert team.token not in text


def test_clients_pipenv_contributor_gets_the_public_release(
        team: Team, dead_proxy: str, tmp_path: Path) -> None:
    app = project(tmp_path / "app", PIPFILE.format(packages='public-pkg = "*"'), "Pipfile")
    program, env = pipenv(tmp_path, team.index, dead_proxy)
    run([program, "install", "--python", BASE_PYTHON], app, env)
    assert packages(app / ".venv") == {PUBLIC}
    refused = run([program, "install", "private-pkg"], app, env, ok=False)
    assert refused.returncode != 0
    assert "No matching distribution found for private-pkg" in refused.stdout + refused.stderr
    assert packages(app / ".venv") == {PUBLIC}
