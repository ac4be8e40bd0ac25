"""Builds in a real git checkout: version scripts and backends that ask git themselves.

The shapes of the projects that failed when the tree was exported without `.git`: a version
script that runs git (pdm-backend's `source = "call"`, as mkdocstrings-python and the original
pypi-insiders use) and a version read from `git describe` (dunamai, uv-dynamic-versioning, as
griffe uses). The offline fixtures are in-tree backends doing what those do; the real backends
are below, marked `network`. Each build is published by an update and installed with pip.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pypi_insiders import config
from pypi_insiders.fetch import runner
from tests.conftest import ConfigMaker
from tests.support import git_fixtures as g
from tests.support.server_fixtures import VENV_BIN

pytestmark = pytest.mark.slow

# The version from git, never from the builder's variables (which it removes first).
GIT_VERSION = r'''
import os, re, subprocess

def git_version():
    for name in [k for k in os.environ if "PRETEND_VERSION" in k or k == "PDM_BUILD_SCM_VERSION"]:
        del os.environ[name]
    tag = subprocess.run(["git", "describe", "--tags", "--exact-match"], capture_output=True, text=True,
                         check=True).stdout.strip()
    tag = tag[1:] if tag.startswith("v") else tag
    return re.sub(r"-insiders-(.*)", r"+insiders.\1", tag)

if __name__ == "__main__":
    print(git_version())
'''

# dunamai-like: the backend asks git itself
DESCRIBE_BACKEND = r'''
import pathlib
import intree_backend as base
from git_version import git_version

base._meta = lambda: (pathlib.Path("NAME").read_text().strip(), git_version())
from intree_backend import build_sdist, build_wheel
'''

# pdm-backend `source = "call"`-like: a script of the project runs git, the backend runs the script
SCRIPT_BACKEND = r'''
import pathlib, subprocess, sys
import intree_backend as base

def _version():
    return subprocess.run([sys.executable, "scripts/get_version.py"], capture_output=True, text=True,
                          check=True).stdout.strip()

base._meta = lambda: (pathlib.Path("NAME").read_text().strip(), _version())
from intree_backend import build_sdist, build_wheel
'''


def _files(name: str, style: str) -> dict[str, str]:
    backend = {"describe": DESCRIBE_BACKEND, "script": SCRIPT_BACKEND}[style]
    pyproject = g.INTREE_PYPROJECT.replace('"intree_backend"', '"git_backend"')
    return {**g.intree_files(name), "pyproject.toml": pyproject, "git_backend.py": backend,
            "git_version.py": GIT_VERSION, "scripts/get_version.py": GIT_VERSION}


def _pip_install(store: Path, requirement: str, target: Path) -> None:
    done = subprocess.run([str(VENV_BIN / "python"), "-m", "pip", "install", "--no-cache-dir", "--no-index",
                           "--find-links", str(store), "--target", str(target), requirement],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("style", ["describe", "script"])
@pytest.mark.parametrize(("tag", "version"), [
    ("v2.0.11", "2.0.11"),
    ("1.2.0.1.3.0", "1.2.0.1.3.0"),
    ("9.5.17-insiders-4.53.6", "9.5.17+insiders.4.53.6"),
])
def test_checkout_version_from_git_builds_and_installs(make_config: ConfigMaker, tmp_path: Path,
                                                       style: str, tag: str, version: str) -> None:
    name = f"git-{style}-demo"
    upstream = g.init_repo(tmp_path / "up", _files(name, style))
    g.commit_files(upstream, {"CHANGELOG": "older\n"})
    g.tag(upstream, "v0.0.1")  # an older tag in the history: describe must find the right one
    g.commit_files(upstream, {"CHANGELOG": "newer\n"})
    g.tag(upstream, tag)
    loaded = config.load(str(make_config(repos={"demo": {"url": str(upstream), "distribution": name,
                                                         "min_version": "0.1"}})))
    assert runner.cli_update(loaded, []) == 0
    module = name.replace("-", "_")
    _pip_install(loaded.paths.store / name, f"{name}=={version}", tmp_path / "target")
    assert (tmp_path / "target" / module / "__init__.py").read_text() == f"VERSION = {version!r}\n"


PDM_CALL_PYPROJECT = g.dynamic_version_pyproject(["pdm-backend"], "pdm.backend", """\
[tool.pdm.version]
source = "call"
getter = "scripts.get_version:get_version"
""")

# as mkdocstrings-python's scripts/get_version.py does: ask git through the scm getter's own code
PDM_GET_VERSION = '''
import subprocess

def get_version():
    tag = subprocess.run(["git", "describe", "--tags", "--exact-match"], capture_output=True, text=True,
                         check=True).stdout.strip()
    return tag.lstrip("v")
'''

UV_DYNAMIC_PYPROJECT = g.dynamic_version_pyproject(
    ["hatchling", "uv-dynamic-versioning"], "hatchling.build", """\
[tool.hatch.version]
source = "uv-dynamic-versioning"

[tool.uv-dynamic-versioning]
vcs = "git"
style = "pep440"
pattern = "default-unprefixed"

[tool.hatch.build.targets.wheel]
packages = ["{module}"]
""")


@pytest.mark.network
@pytest.mark.parametrize(("shape", "tag", "version"), [
    ("pdm-call", "2.0.11.1.3.0", "2.0.11.1.3.0"),
    ("uv-dynamic-versioning", "1.2.0.1.3.0", "1.2.0.1.3.0"),
])
def test_checkout_real_backends_asking_git_build_and_install(make_config: ConfigMaker, tmp_path: Path,
                                                             shape: str, tag: str, version: str) -> None:
    name = f"{shape}-demo"
    module = name.replace("-", "_")
    if shape == "pdm-call":
        files = {"pyproject.toml": PDM_CALL_PYPROJECT.format(name=name), "scripts/__init__.py": "",
                 "scripts/get_version.py": PDM_GET_VERSION, f"src/{module}/__init__.py": "VERSION = 'x'\n"}
    else:
        files = {"pyproject.toml": UV_DYNAMIC_PYPROJECT.format(name=name, module=module),
                 f"{module}/__init__.py": "VERSION = 'x'\n"}
    upstream = g.init_repo(tmp_path / "up", files)
    g.tag(upstream, tag)
    loaded = config.load(str(make_config(repos={"demo": {"url": str(upstream), "distribution": name}})))
    assert runner.cli_update(loaded, []) == 0
    _pip_install(loaded.paths.store / name, f"{name}=={version}", tmp_path / "target")
    assert (tmp_path / "target" / module / "__init__.py").is_file()
