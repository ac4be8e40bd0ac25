"""One build request as the runner makes it, for tests that call `builder.build` directly."""

from __future__ import annotations

from pathlib import Path

from packaging.utils import canonicalize_name

from pypi_insiders import config
from pypi_insiders.fetch import builder, git, sandbox
from pypi_insiders.fetch.versions import TagVersion, version_of_tag
from tests.conftest import ConfigMaker


def build_request(make_config: ConfigMaker, tmp_path: Path, upstream: Path, tag: str, *,
                  subdirectory: str = "", distribution: str | None = None, timeout: float = 600.0,
                  pip_cache: Path | None = None, build_envs: Path | None = None) -> builder.BuildRequest:
    """A build of `tag` of the repository at `upstream`, configured as "demo" and mirrored first.

    It works in `tmp_path/work`; build environments go under the config's cache unless
    `build_envs` names a directory, and pip keeps no cache unless `pip_cache` does.
    """
    loaded = config.load(str(make_config(repos={"demo": {"url": str(upstream)}})))
    tags = git.update(loaded, loaded.repos[0]).tags
    version = version_of_tag(tag)
    assert version is not None
    workdir = tmp_path / "work"
    workdir.mkdir()
    tag_version = TagVersion(tag, tags[tag], version)
    name = canonicalize_name(distribution) if distribution else None
    return builder.BuildRequest(repo_key="demo", mirror=git.mirror_path(loaded, "demo"), tag=tag_version,
                                subdirectory=subdirectory, distribution=name, timeout=timeout,
                                workdir=workdir, pip_cache=pip_cache,
                                build_envs=build_envs or loaded.paths.cache / "build-envs",
                                sandbox=sandbox.for_config(loaded))
