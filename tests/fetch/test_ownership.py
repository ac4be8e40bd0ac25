"""One distribution per repository, one owner per name: a build naming another's project is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pypi_insiders import config
from pypi_insiders.fetch import repo_state, runner
from pypi_insiders.store import Store
from tests.conftest import ConfigMaker
from tests.support import git_fixtures as g
from tests.support.distfiles import make_sdist

pytestmark = pytest.mark.slow


def _store_files(loaded: config.Config) -> set[str]:
    return {entry.relpath for entry in Store(loaded.paths.store).walk()}


def _failure(loaded: config.Config, key: str, version: str) -> str:
    state = json.loads(repo_state.path_of(loaded, key).read_text())
    error: str = state["failed_builds"][version]["error"]
    return error


def test_ownership_learnt_name_is_enforced(make_config: ConfigMaker, tmp_path: Path) -> None:
    """No `distribution`: the first build's name is the repository's for good."""
    evil = g.init_repo(tmp_path / "evil", g.intree_files("harmless-tool"))
    g.tag(evil, "v0.1")
    loaded = config.load(str(make_config(repos={"evil": {"url": str(evil)}})))
    assert runner.cli_update(loaded, []) == 0
    g.commit_files(evil, {"NAME": "requests\n"})
    g.tag(evil, "v99.0")
    assert runner.cli_update(loaded, []) == 1
    assert _failure(loaded, "evil", "99.0") == (
        "repository evil tag v99.0: requests-99.0-py3-none-any.whl is named 'requests', this repository "
        "publishes 'harmless-tool' (configured, or learnt at its first build); nothing published")
    assert _store_files(loaded) == {"harmless-tool/harmless_tool-0.1-py3-none-any.whl",
                                    "harmless-tool/harmless_tool-0.1.tar.gz"}


def test_ownership_name_of_another_repository_is_refused(make_config: ConfigMaker, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    victim = g.init_repo(tmp_path / "victim", g.intree_files("secret-proj"))
    g.tag(victim, "v1.0")
    evil = g.init_repo(tmp_path / "evil", g.intree_files("secret-proj"))
    g.tag(evil, "v99.0")
    # the victim's name is learnt at its first build, not configured
    loaded = config.load(str(make_config(repos={"victim": {"url": str(victim)}, "evil": {"url": str(evil)}})))
    assert runner.cli_update(loaded, ["victim"]) == 0
    assert runner.cli_update(loaded, ["evil"]) == 1
    assert _failure(loaded, "evil", "99.0") == (
        "repository evil tag v99.0: builds 'secret-proj', a name owned by repository victim; "
        "nothing published")
    assert caplog.records[-1].getMessage() == (  # the run's summary line says why too
        "1 repository: 0 updated, 0 unchanged, 1 failed (evil: build of v99.0 failed: builds "
        "'secret-proj', a name owned by repository victim; nothing published)")
    assert not any("99.0" in f for f in _store_files(loaded))
    assert repo_state.load(loaded, "evil").distribution is None  # nothing learnt from a refused build


def test_ownership_configured_name_of_another_repository_is_refused(make_config: ConfigMaker,
                                                                   tmp_path: Path) -> None:
    evil = g.init_repo(tmp_path / "evil", g.intree_files("secret-proj"))
    g.tag(evil, "v99.0")
    loaded = config.load(str(make_config(repos={
        "victim": {"url": str(tmp_path / "nowhere"), "distribution": "secret-proj"},
        "evil": {"url": str(evil)}})))
    assert runner.cli_update(loaded, ["evil"]) == 1
    assert "a name owned by repository victim" in _failure(loaded, "evil", "99.0")
    assert _store_files(loaded) == set()


def test_ownership_name_held_by_uploads_is_refused(make_config: ConfigMaker, tmp_path: Path) -> None:
    evil = g.init_repo(tmp_path / "evil", g.intree_files("uploaded-proj"))
    g.tag(evil, "v99.0")
    loaded = config.load(str(make_config(repos={"evil": {"url": str(evil)}})))
    make_sdist(loaded.paths.store / "uploaded-proj", "uploaded-proj", "1.0")  # no provenance: an upload
    assert runner.cli_update(loaded, []) == 1
    assert _failure(loaded, "evil", "99.0") == (
        "repository evil tag v99.0: builds 'uploaded-proj', a name owned by uploads (or files added by "
        "hand); nothing published")
    assert _store_files(loaded) == {"uploaded-proj/uploaded_proj-1.0.tar.gz"}


def test_ownership_own_name_keeps_building(make_config: ConfigMaker, tmp_path: Path) -> None:
    """A repository's own earlier files (provenance or its state) never block its next tag."""
    upstream = g.init_repo(tmp_path / "own", g.intree_files("own-proj"))
    g.tag(upstream, "v1.0")
    loaded = config.load(str(make_config(repos={"own": {"url": str(upstream), "distribution": "own-proj"}})))
    assert runner.cli_update(loaded, []) == 0
    g.commit_files(upstream, {"CHANGELOG": "1.1\n"})
    g.tag(upstream, "v1.1")
    assert runner.cli_update(loaded, []) == 0
    assert "own-proj/own_proj-1.1-py3-none-any.whl" in _store_files(loaded)
