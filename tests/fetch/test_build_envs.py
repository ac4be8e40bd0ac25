"""Builds in environments made from the local cache: isolated, reused, offline once filled."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from pypi_insiders import config
from pypi_insiders.errors import BuildError
from pypi_insiders.fetch import build_envs, builder, git, sandbox
from pypi_insiders.fetch.versions import TagVersion, version_of_tag
from tests.conftest import ConfigMaker
from tests.support import git_fixtures as g

pytestmark = pytest.mark.slow

# what build 0.9 prints when it makes an isolated environment of its own
OWN_ISOLATION = b"Creating venv isolated environment"


def _request(make_config: ConfigMaker, tmp_path: Path, upstream: Path, tag: str,
             name: str, *, sandboxed: bool = True,
             build_env: dict[str, str] | None = None) -> builder.BuildRequest:
    fetch: dict[str, object] = {} if sandboxed else {"sandbox": "off"}
    if build_env:
        fetch["build_env"] = build_env
    loaded = config.load(str(make_config(repos={"demo": {"url": str(upstream)}}, fetch=fetch)))
    tags = git.update(loaded, loaded.repos[0]).tags
    version = version_of_tag(tag)
    assert version is not None
    workdir = tmp_path / f"work-{tag}"
    workdir.mkdir()
    tag_version = TagVersion(tag, tags[tag], version)
    return builder.BuildRequest(repo_key="demo", mirror=git.mirror_path(loaded, "demo"), tag=tag_version,
                                subdirectory="", distribution=canonicalize_name(name), timeout=600.0,
                                workdir=workdir, pip_cache=tmp_path / "pip-cache",
                                build_envs=tmp_path / "build-envs", sandbox=sandbox.for_config(loaded),
                                settings=loaded.fetch.build_env)


def _templates(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "build-envs" / "envs").iterdir())


def test_build_env_hides_the_system_and_the_frontend_from_the_backend(make_config: ConfigMaker,
                                                                      tmp_path: Path) -> None:
    # dulwich and waitress are on the system path, build and packaging are the frontend's
    upstream = g.init_repo(tmp_path / "up", {**g.intree_files("demo"),
                                             "HIDDEN": "dulwich waitress build packaging pypi_insiders\n"})
    g.tag(upstream, "v1.0")
    request = _request(make_config, tmp_path, upstream, "v1.0", "demo")
    built = builder.build(request)
    assert {str(f.version) for f in built} == {"1.0"}
    assert OWN_ISOLATION not in (request.workdir / "build.log").read_bytes()
    assert len(_templates(tmp_path)) == 1


def test_build_env_leak_fails_the_build(make_config: ConfigMaker, tmp_path: Path) -> None:
    """The check above can fail: the standard library is there, and the backend says so."""
    upstream = g.init_repo(tmp_path / "up", {**g.intree_files("demo"), "HIDDEN": "json\n"})
    g.tag(upstream, "v1.0")
    with pytest.raises(BuildError, match="build failed"):
        builder.build(_request(make_config, tmp_path, upstream, "v1.0", "demo"))


def _cut_off_the_index(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("PIP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple/")
    monkeypatch.setenv("PIP_RETRIES", "0")


@pytest.mark.network
def test_build_env_is_filled_once_then_builds_offline(make_config: ConfigMaker, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    name = "cached-setuptools-demo"
    upstream = g.init_repo(tmp_path / "up", g.backend_files("setuptools", name))
    g.tag(upstream, "v1.0")
    first = builder.build(_request(make_config, tmp_path, upstream, "v1.0", name))
    assert {str(f.version) for f in first} == {"1.0"}
    wheels = sorted(p.name for p in (tmp_path / "build-envs" / "wheels").iterdir())
    assert any(w.startswith("setuptools-") for w in wheels)
    assert any(w.startswith("setuptools_scm-") for w in wheels)
    _cut_off_the_index(monkeypatch)
    g.commit_files(upstream, {"CHANGELOG": "1.1\n"})
    g.tag(upstream, "v1.1")
    request = _request(make_config, tmp_path, upstream, "v1.1", name)
    assert {str(f.version) for f in builder.build(request)} == {"1.1"}
    assert OWN_ISOLATION not in (request.workdir / "build.log").read_bytes()
    assert len(_templates(tmp_path)) == 1  # the same requirements reuse the environment
    # a new environment (changed requirements, or a deleted one) is made from the cached wheels
    for template in _templates(tmp_path):
        (template / build_envs.READY).unlink()
    g.commit_files(upstream, {"CHANGELOG": "1.2\n"})
    g.tag(upstream, "v1.2")
    assert {str(f.version) for f in builder.build(_request(make_config, tmp_path, upstream, "v1.2", name))} \
        == {"1.2"}


@pytest.mark.network
def test_build_env_changed_requirements_get_a_new_environment(make_config: ConfigMaker,
                                                              tmp_path: Path) -> None:
    name = "changing-demo"
    upstream = g.init_repo(tmp_path / "up", g.backend_files("setuptools", name))
    g.tag(upstream, "v1.0")
    builder.build(_request(make_config, tmp_path, upstream, "v1.0", name))
    pyproject = (upstream / "pyproject.toml").read_text().replace('"setuptools>=64"', '"setuptools>=65"')
    g.commit_files(upstream, {"pyproject.toml": pyproject})
    g.tag(upstream, "v1.1")
    builder.build(_request(make_config, tmp_path, upstream, "v1.1", name))
    assert len(_templates(tmp_path)) == 2


def _uncachable(tmp_path: Path) -> Path:
    files = g.intree_files("demo")
    files["pyproject.toml"] = files["pyproject.toml"].replace("requires = []",
                                                              'requires = ["not-cached-anywhere"]')
    upstream = g.init_repo(tmp_path / "up", files)
    g.tag(upstream, "v1.0")
    return upstream


def test_build_env_sandboxed_without_its_requirements_fails_saying_which(
        make_config: ConfigMaker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox has no network: requirements that cannot be had beforehand fail the build."""
    _cut_off_the_index(monkeypatch)
    request = _request(make_config, tmp_path, _uncachable(tmp_path), "v1.0", "demo")
    with pytest.raises(BuildError, match=r"tag v1.0: build requirements not-cached-anywhere cannot be had "
                                         r"as wheels \(pip says: .*not-cached-anywhere"):
        builder.build(request)
    assert list((tmp_path / "build-envs" / "envs").iterdir()) == []


def test_build_env_unsandboxed_without_an_index_falls_back_to_builds_own_isolation(
        make_config: ConfigMaker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A requirement that can be neither cached nor fetched: the build is build's own, as before."""
    _cut_off_the_index(monkeypatch)
    request = _request(make_config, tmp_path, _uncachable(tmp_path), "v1.0", "demo", sandboxed=False)
    with pytest.raises(BuildError, match="build failed"):
        builder.build(request)
    assert OWN_ISOLATION in (request.workdir / "build.log").read_bytes()
    assert list((tmp_path / "build-envs" / "envs").iterdir()) == []


DEBIAN_WHEELS = Path("/usr/share/python-wheels")  # python3-setuptools-whl, python3-wheel-whl


def test_build_env_from_debians_wheels_without_an_index_is_made_once(
        make_config: ConfigMaker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped way to build offline: Debian's wheels as find-links, no index; then cached.

    The settings come from the configuration ([fetch.build_env]), as for the service and `update`.
    """
    _cut_off_the_index(monkeypatch)
    offline = {"PIP_FIND_LINKS": str(DEBIAN_WHEELS), "PIP_NO_INDEX": "1"}
    pyproject = ('[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
                 '[project]\nname = "debian-wheels-demo"\nversion = "{version}"\n'
                 '[tool.setuptools]\npy-modules = []\n')
    upstream = g.init_repo(tmp_path / "up", {"pyproject.toml": pyproject.format(version="1.0")})
    g.tag(upstream, "v1.0")
    first = _request(make_config, tmp_path, upstream, "v1.0", "debian-wheels-demo", build_env=offline)
    assert {str(f.version) for f in builder.build(first)} == {"1.0"}
    g.commit_files(upstream, {"pyproject.toml": pyproject.format(version="1.1")})
    g.tag(upstream, "v1.1")
    second = _request(make_config, tmp_path, upstream, "v1.1", "debian-wheels-demo", build_env=offline)
    assert {str(f.version) for f in builder.build(second)} == {"1.1"}
    # setuptools 66 asks for `wheel` beyond its static requirements: an environment with it, once
    assert len(_templates(tmp_path)) == 2
    assert b"Missing dependencies" not in (second.workdir / "build.log").read_bytes()  # remembered
