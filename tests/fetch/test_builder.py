"""Real builds of one tag: the in-tree backend (offline), then setuptools, hatchling and pdm-backend."""

from __future__ import annotations

import logging
import os
import tarfile
import time
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from pypi_insiders.errors import BuildError
from pypi_insiders.fetch import build_output, builder
from tests.conftest import ConfigMaker
from tests.support import git_fixtures as g
from tests.support.build_fixtures import build_request
from tests.support.process_fixtures import gone_within, watching_processes_in

pytestmark = pytest.mark.slow


def _request(make_config: ConfigMaker, tmp_path: Path, upstream: Path, tag: str, *,
             subdirectory: str = "", distribution: str | None = None,
             timeout: float = 600.0) -> builder.BuildRequest:
    """With a pip cache and build environments of the test's own."""
    return build_request(make_config, tmp_path, upstream, tag, subdirectory=subdirectory,
                         distribution=distribution, timeout=timeout, pip_cache=tmp_path / "pip-cache",
                         build_envs=tmp_path / "build-envs")


def test_build_passes_the_tag_version_and_commit_time(make_config: ConfigMaker, tmp_path: Path) -> None:
    upstream = g.init_repo(tmp_path / "up", g.intree_files("demo-pkg"))
    (upstream / "bin").mkdir()
    (upstream / "bin" / "tool").write_text("#!/bin/sh\n")
    (upstream / "bin" / "tool").chmod(0o755)  # dulwich records the mode from the working tree
    g.commit_files(upstream, {"bin/tool": "#!/bin/sh\n"}, "add a tool")
    g.tag(upstream, "9.5.17-insiders-4.53.6")
    request = _request(make_config, tmp_path, upstream, "9.5.17-insiders-4.53.6", distribution="demo-pkg")
    built = builder.build(request)
    assert sorted(f.path.name for f in built) == ["demo_pkg-9.5.17+insiders.4.53.6-py3-none-any.whl",
                                                  "demo_pkg-9.5.17+insiders.4.53.6.tar.gz"]
    assert {str(f.version) for f in built} == {"9.5.17+insiders.4.53.6"}
    sdist = next(f.path for f in built if f.path.name.endswith(".tar.gz"))
    with tarfile.open(sdist) as archive:
        mtimes = {member.mtime for member in archive.getmembers()}
    assert len(mtimes) == 1
    assert abs(mtimes.pop() - time.time()) < 600  # SOURCE_DATE_EPOCH is the tag commit's time
    assert (request.workdir / "src" / ".git").is_dir()  # a real checkout, for backends that ask git
    assert os.access(request.workdir / "src" / "bin" / "tool", os.X_OK)


def test_build_finds_a_project_in_a_subdirectory(make_config: ConfigMaker, tmp_path: Path) -> None:
    files = {f"python/{name}": text for name, text in g.intree_files("mono-part").items()}
    upstream = g.init_repo(tmp_path / "up", {**files, "README": "a monorepo\n"})
    g.tag(upstream, "v2.0")
    request = _request(make_config, tmp_path, upstream, "v2.0", subdirectory="python")
    assert {f.name for f in builder.build(request)} == {"mono-part"}


def test_build_refuses_files_whose_version_differs_from_the_tag(make_config: ConfigMaker,
                                                                tmp_path: Path) -> None:
    upstream = g.init_repo(tmp_path / "up", {**g.intree_files("demo"), "STATIC_VERSION": "1.0\n"})
    g.tag(upstream, "v2.0")
    with pytest.raises(BuildError, match=r"v2.0: demo-1\.0\S* carries version 1.0, the tag says 2.0"):
        builder.build(_request(make_config, tmp_path, upstream, "v2.0"))


def test_build_refuses_files_with_another_name(make_config: ConfigMaker, tmp_path: Path) -> None:
    upstream = g.init_repo(tmp_path / "up", g.intree_files("surprise"))
    g.tag(upstream, "v1.0")
    with pytest.raises(BuildError, match="is named 'surprise', this repository publishes 'expected'"):
        builder.build(_request(make_config, tmp_path, upstream, "v1.0", distribution="expected"))


def test_build_failure_logs_the_tail_of_the_output(make_config: ConfigMaker, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    upstream = g.init_repo(tmp_path / "up", {**g.intree_files("demo"), "FAIL": "yes\n"})
    g.tag(upstream, "v1.0")
    with pytest.raises(BuildError, match=r"repository demo tag v1.0: build failed \(exit status 1\)"):
        builder.build(_request(make_config, tmp_path, upstream, "v1.0"))
    record = next(r for r in caplog.records if r.levelno == logging.ERROR)
    assert "this build fails on purpose" in record.getMessage()
    fields = record.__dict__
    assert (fields["REPO"], fields["TAG"], fields["STEP"]) == ("demo", "v1.0", "build")


def test_build_timeout_kills_the_whole_process_group(make_config: ConfigMaker, tmp_path: Path) -> None:
    # the gate is in the tree: the sandbox shows the build nothing else
    files = {**g.intree_files("demo"), "SLOW": "hang.gate\n", "hang.gate": ""}
    upstream = g.init_repo(tmp_path / "up", files)
    g.tag(upstream, "v1.0")
    # The proof needs the backend hanging at its gate (a process below the frontend's) when the
    # time runs out. A loaded host can take more than 20 s to get there (it did at load 11), so
    # the time-out doubles until it does; every try's processes must be gone all the same.
    for attempt, timeout in enumerate((20, 40, 80)):
        (tmp_path / f"try-{attempt}").mkdir()
        request = _request(make_config, tmp_path / f"try-{attempt}", upstream, "v1.0", timeout=timeout)
        seen: dict[int, int] = {}
        with watching_processes_in(request.workdir / "src", seen):
            with pytest.raises(BuildError, match=f"build timed out after {timeout} s"):
                builder.build(request)
            stopped = time.time()
        assert seen
        assert all(gone_within(pid, 5.0, started) for pid, started in seen.items())
        gate = request.workdir / "src" / "hang.pid"  # written by the backend when it starts to wait
        if gate.exists():
            # Stopped by the time-out, counted from the build's start (before the gate), and not
            # by the backend giving up its wait after 120 s; measured from the gate, so a slow
            # checkout or environment on a loaded host does not count.
            assert stopped - gate.stat().st_mtime < timeout + 20
            return
    pytest.fail("the backend never reached its gate, even in 80 s: the host is too busy to prove anything")


def test_output_tail_is_bounded(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_text("".join(f"line {n}\n" for n in range(100_000)))
    tail = build_output.output_tail(log)
    assert len(tail.splitlines()) == build_output.TAIL_LINES
    assert tail.endswith("line 99999")


@pytest.mark.network
@pytest.mark.parametrize(("backend", "tag", "version"), [
    ("setuptools", "9.5.17-insiders-4.53.6", "9.5.17+insiders.4.53.6"),
    ("hatchling", "1.2.0.1.3.0", "1.2.0.1.3.0"),
    ("pdm-backend", "v1.2.3", "1.2.3"),
])
def test_build_gives_scm_backends_the_tag_version(make_config: ConfigMaker, tmp_path: Path,
                                                  backend: str, tag: str, version: str) -> None:
    name = f"scm-{backend}-demo"
    upstream = g.init_repo(tmp_path / "up", g.backend_files(backend, name))
    g.tag(upstream, tag)
    built = builder.build(_request(make_config, tmp_path, upstream, tag, distribution=name))
    assert {(f.name, str(f.version)) for f in built} == {(canonicalize_name(name), version)}
    assert len(built) == 2


@pytest.mark.parametrize(("output", "cause"), [
    ("* Building wheel...\nTraceback (most recent call last):\n  File \"x.py\", line 1\n"
     "RuntimeError: Unable to detect version control system.\n\n"
     "ERROR Backend subprocess exited when trying to invoke build_wheel\n",
     "RuntimeError: Unable to detect version control system."),
    ("ERROR Failed to parse {src}/pyproject.toml: Invalid value (at line 3, column 5)\n",
     "Failed to parse pyproject.toml: Invalid value (at line 3, column 5)"),
    ("running build\nerror: package directory 'demo' does not exist\n",
     "error: package directory 'demo' does not exist"),
    ("something odd\nthe last words\n", "the last words"),
    ("", "no output"),
])
def test_failure_cause_is_the_backends_last_error(tmp_path: Path, output: str, cause: str) -> None:
    source = tmp_path / "work" / "src"
    log = tmp_path / "build.log"
    log.write_text(output.format(src=source))
    assert build_output.failure_cause(log, source) == cause
