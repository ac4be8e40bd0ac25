"""pip and uv installing from the index: the real generator's pages, the app on a loopback port,
and a second loopback server as upstream. pip and uv are pointed only at loopback URLs.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pypi_insiders import config, directories
from pypi_insiders.index import generate
from pypi_insiders.web.app import make_app
from tests.conftest import ConfigMaker
from tests.support.distfiles import make_wheel
from tests.support.server_fixtures import (
    JSON_TYPE,
    VENV_BIN,
    FakeUpstream,
    ThreadedServer,
    request,
    service_env,
)

pytestmark = pytest.mark.slow


@dataclass
class Index:
    url: str
    store: Path
    upstream: FakeUpstream
    upstream_url: str


def _store(store: Path) -> None:
    make_wheel(store / "demo-pkg", "Demo.Pkg", "1.0", requires=["helper-lib>=1"])
    make_wheel(store / "helper-lib", "helper-lib", "1.0")
    for minor in range(12):  # a page over the size from which it is served gzipped to pip and uv
        make_wheel(store / "helper-lib", "helper-lib", f"0.{minor}")
    make_wheel(store / "modern-only", "modern-only", "1.0", requires_python=">=3")
    make_wheel(store / "modern-only", "modern-only", "2.0", requires_python=">=4")
    make_wheel(store / "shared-name", "shared-name", "1.0")


@pytest.fixture(params=["redirect", "proxy"])
def index(request: pytest.FixtureRequest, make_config: ConfigMaker, data_dir: Path,
          tmp_path: Path) -> Iterator[Index]:
    remote = make_wheel(tmp_path / "upstream", "remote-only", "3.0")
    public = make_wheel(tmp_path / "upstream", "shared-name", "99.0")
    fake = FakeUpstream(projects={"remote-only": {remote.name: remote.read_bytes()},
                                  "shared-name": {public.name: public.read_bytes()}})
    with ThreadedServer(fake.app) as upstream:
        loaded = config.load(str(make_config(upstream={"url": upstream.url + "simple/",
                                                       "fallback": request.param})))
        directories.prepare(loaded, create=True)
        _store(loaded.paths.store)
        generate.Generator.from_config(loaded).generate_all()
        with ThreadedServer(make_app(loaded), threads=8) as server:
            yield Index(server.url + "simple/", loaded.paths.store, fake, upstream.url)


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, cwd=cwd, env=service_env({"UV_CACHE_DIR": str(cwd / "uv-cache")}),
                            capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, f"{argv}\n{result.stdout}\n{result.stderr}"
    return result


def pip_install(index: Index, tmp_path: Path, *requirements: str) -> set[str]:
    """Installs into a fresh target directory; returns the dist-info names found there."""
    target = tmp_path / f"target-{len(list(tmp_path.glob('target-*')))}"
    _run([str(VENV_BIN / "python"), "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check",
          "--index-url", index.url, "--target", str(target), "--no-build-isolation", "--only-binary", ":all:",
          *requirements], tmp_path)
    return {p.name for p in target.glob("*.dist-info")}


def test_install_pip_installs_a_dependency_between_local_projects(index: Index, tmp_path: Path) -> None:
    assert pip_install(index, tmp_path, "demo-pkg") == {"demo_pkg-1.0.dist-info", "helper_lib-1.0.dist-info"}
    assert index.upstream.count("/") == 0


@pytest.mark.parametrize("spelling", ["Demo.Pkg", "DEMO_pkg", "demo--pkg"])
def test_install_pip_accepts_unnormalized_names(index: Index, tmp_path: Path, spelling: str) -> None:
    assert "demo_pkg-1.0.dist-info" in pip_install(index, tmp_path, spelling)


def test_install_pip_honours_requires_python(index: Index, tmp_path: Path) -> None:
    assert pip_install(index, tmp_path, "--no-deps", "modern-only") == {"modern_only-1.0.dist-info"}


def test_install_pip_with_require_hashes(index: Index, tmp_path: Path) -> None:
    lines = []
    for project, wheel in (("demo-pkg", "demo_pkg-1.0-py3-none-any.whl"),
                           ("helper-lib", "helper_lib-1.0-py3-none-any.whl")):
        digest = hashlib.sha256((index.store / project / wheel).read_bytes()).hexdigest()
        lines.append(f"{project}==1.0 --hash=sha256:{digest}")
    (tmp_path / "requirements.txt").write_text("\n".join(lines) + "\n")
    installed = pip_install(index, tmp_path, "--require-hashes", "-r", str(tmp_path / "requirements.txt"))
    assert installed == {"demo_pkg-1.0.dist-info", "helper_lib-1.0.dist-info"}


def test_install_pip_rejects_a_wrong_hash(index: Index, tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text(f"helper-lib==1.0 --hash=sha256:{'0' * 64}\n")
    result = subprocess.run(
        [str(VENV_BIN / "python"), "-m", "pip", "install", "--no-cache-dir", "--index-url", index.url,
         "--target", str(tmp_path / "t"), "--require-hashes", "-r", str(tmp_path / "requirements.txt")],
        cwd=tmp_path, env=service_env(), capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode != 0
    assert "DO NOT MATCH" in result.stderr


def test_install_local_name_wins_over_upstream(index: Index, tmp_path: Path) -> None:
    assert pip_install(index, tmp_path, "--no-deps", "shared-name") == {"shared_name-1.0.dist-info"}
    assert index.upstream.count("/") == 0


def test_install_upstream_only_project_through_the_fallback(index: Index, tmp_path: Path) -> None:
    assert pip_install(index, tmp_path, "--no-deps", "remote-only") == {"remote_only-3.0.dist-info"}
    assert index.upstream.count("/simple/remote-only/") == 1
    assert index.upstream.count("/files/remote-only/") == 1  # the file came from upstream itself


def test_install_pages_reach_pip_and_uv_gzipped(index: Index) -> None:
    """Every install above resolves helper-lib: its page goes to pip and uv compressed."""
    reply = request(index.url.removesuffix("simple/"), "/simple/helper-lib/",
                    headers={"Accept-Encoding": "gzip, deflate", "Accept": JSON_TYPE})
    assert reply.header("Content-Encoding") == "gzip"
    assert len(json.loads(gzip.decompress(reply.body))["files"]) == 13


def test_install_uv_installs_into_a_venv(index: Index, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run([str(VENV_BIN / "uv"), "venv", "--no-config", "--python", str(VENV_BIN / "python"), str(venv)],
         tmp_path)
    _run([str(VENV_BIN / "uv"), "pip", "install", "--no-config", "--no-cache", "--python",
          str(venv / "bin" / "python"), "--index-url", index.url, "Demo_Pkg", "modern-only",
          "remote-only"], tmp_path)
    site = next(venv.glob("lib/python3*/site-packages"))
    installed = {p.name for p in site.glob("*.dist-info")}
    assert {"demo_pkg-1.0.dist-info", "helper_lib-1.0.dist-info", "modern_only-1.0.dist-info",
            "remote_only-3.0.dist-info"} <= installed
    assert index.upstream.count("/simple/shared-name/") == 0
