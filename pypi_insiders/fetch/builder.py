"""One build of one tag: export its tree, run `python -m build`, check what came out.

The tree is exported without `.git`, so the version reaches scm-based backends through their
pretend-version variables (setuptools-scm, hatch-vcs, pdm-backend); SOURCE_DATE_EPOCH comes
from the tag's commit so rebuilding a tag gives the same bytes where the backend allows it.
The build runs in its own session so a time-out kills every process it started. Nothing
here touches the store: the caller publishes the verified files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dulwich.object_store import iter_tree_contents
from dulwich.objects import Commit
from dulwich.repo import Repo
from packaging.utils import NormalizedName
from packaging.version import Version

from pypi_insiders.errors import BuildError, InvalidDistributionError
from pypi_insiders.fetch import build_envs
from pypi_insiders.fetch.versions import TagVersion
from pypi_insiders.metadata import read_core_metadata
from pypi_insiders.store import parse_filename

log = logging.getLogger(__name__)

TAIL_LINES = 200
TAIL_BYTES = 64 * 1024
_GITLINK = 0o160000
# what `python -m build --no-isolation` says when the backend asks for more than the environment has
MISSING_DEPENDENCIES = b"Missing dependencies"


@dataclass(frozen=True)
class BuildRequest:
    repo_key: str
    mirror: Path
    tag: TagVersion
    subdirectory: str
    distribution: NormalizedName | None
    timeout: float
    workdir: Path  # an empty private directory the caller removes afterwards
    pip_cache: Path | None = None
    build_envs: Path | None = None  # the cache of build environments (build_envs.py); None: build's own
    # The distribution as far as known (configured, or read at an earlier build): the log's PROJECT.
    project: NormalizedName | None = None


@dataclass(frozen=True)
class BuiltFile:
    path: Path
    name: NormalizedName
    version: Version


def build(request: BuildRequest) -> list[BuiltFile]:
    """Build the tag's sdist and wheel and return them verified; BuildError says what went wrong."""
    source, outdir = request.workdir / "src", request.workdir / "dist"
    outdir.mkdir()
    epoch = export_tree(request.mirror, request.tag.commit, source)
    project_dir = source / request.subdirectory if request.subdirectory else source
    if not project_dir.is_dir():
        raise BuildError(_where(request) + f": no directory {request.subdirectory!r} in the tag's tree")
    run_build(request, project_dir, outdir, epoch)
    return verify(request, sorted(outdir.iterdir()))


def _where(request: BuildRequest) -> str:
    return f"repository {request.repo_key} tag {request.tag.tag}"


def export_tree(mirror: Path, commit_sha: str, dest: Path) -> int:
    """Write the commit's files (modes and symlinks kept, submodules skipped); return its time."""
    repo = Repo(str(mirror))
    try:
        commit = repo[commit_sha.encode()]
        if not isinstance(commit, Commit):
            msg = f"{commit_sha}: not a commit"
            raise BuildError(msg)
        dest.mkdir()
        for entry in iter_tree_contents(repo.object_store, commit.tree):
            _write_entry(repo, dest, entry.path, entry.mode, entry.sha)
        return int(commit.commit_time)
    finally:
        repo.close()  # type: ignore[no-untyped-call]


def _write_entry(repo: Repo, dest: Path, raw_path: bytes, mode: int, sha: bytes) -> None:
    parts = os.fsdecode(raw_path).split("/")
    if any(p in ("", ".", "..", ".git") for p in parts):
        msg = f"refusing a tree entry with the path {os.fsdecode(raw_path)!r}"
        raise BuildError(msg)
    target = dest.joinpath(*parts)
    if mode == _GITLINK:
        target.mkdir(parents=True, exist_ok=True)  # submodules are not fetched; leave the directory
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    data = repo[sha].as_raw_string()
    if stat.S_ISLNK(mode):
        target.symlink_to(os.fsdecode(data))
        return
    target.write_bytes(data)
    target.chmod(0o755 if mode & 0o100 else 0o644)


def build_env(request: BuildRequest, epoch: int) -> dict[str, str]:
    """The service's environment plus the version for scm backends, minus our credentials."""
    version = str(request.tag.version)
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    env.update({
        "SOURCE_DATE_EPOCH": str(epoch),
        "SETUPTOOLS_SCM_PRETEND_VERSION": version,
        "PDM_BUILD_SCM_VERSION": version,
        "PIP_NO_INPUT": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    if request.distribution:
        dist_var = re.sub(r"[^A-Z0-9]", "_", request.distribution.upper())
        env[f"SETUPTOOLS_SCM_PRETEND_VERSION_FOR_{dist_var}"] = version
    if request.pip_cache is not None:
        env.setdefault("PIP_CACHE_DIR", str(request.pip_cache))
    return env


def run_build(request: BuildRequest, project_dir: Path, outdir: Path, epoch: int) -> None:
    """Build in a copy of a cached environment when there is one, else with build's own isolation."""
    log.info("%s: building %s (version %s)", request.repo_key, request.tag.tag, request.tag.version,
             extra=_context(request))
    env = build_env(request, epoch)
    argv = [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(outdir), str(project_dir)]
    status = _build_in_cached_env(request, argv, project_dir, env)
    if status is None or _fall_back(request, status, outdir):
        status = _run_logged(request, argv, project_dir, env)
    if status != 0:
        _log_output(request.workdir / "build.log", _context(request), f"exited with status {status}")
        msg = (
            f"{_where(request)}: build failed (exit status {status}); "
                         f"see the log for its output"
        )
        raise BuildError(msg)


def _context(request: BuildRequest) -> dict[str, str]:
    context = {"REPO": request.repo_key, "TAG": request.tag.tag, "VERSION": str(request.tag.version),
               "STEP": "build"}
    if request.project or request.distribution:
        context["PROJECT"] = str(request.project or request.distribution)
    return context


def _build_in_cached_env(request: BuildRequest, argv: list[str], project_dir: Path,
                         env: dict[str, str]) -> int | None:
    """The build in a fresh copy of the cached environment; None when there is none to be had."""
    if request.build_envs is None:
        return None
    command = build_envs.prepare(request.build_envs, project_dir, request.workdir / "env", env,
                                 request.timeout)
    if command is None:
        return None
    fast = [*command, "--no-isolation", *argv[3:]]
    return _run_logged(request, fast, project_dir, build_envs.isolated_env(env))


def _fall_back(request: BuildRequest, status: int, outdir: Path) -> bool:
    """A backend asking for more than its static requirements gets build's own isolation instead."""
    if status == 0 or MISSING_DEPENDENCIES not in (request.workdir / "build.log").read_bytes():
        return False
    log.info("%s: %s asks for build dependencies beyond [build-system].requires; building it with "
             "build's own isolation", request.repo_key, request.tag.tag, extra=_context(request))
    shutil.rmtree(outdir)
    outdir.mkdir()
    return True


def _run_logged(request: BuildRequest, argv: list[str], project_dir: Path, env: dict[str, str]) -> int:
    """Run one build command in its own session, output to the build log; its exit status."""
    output_path = request.workdir / "build.log"
    with output_path.open("wb") as output:
        process = subprocess.Popen(argv, cwd=project_dir, env=env,
                                   stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            return process.wait(timeout=request.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            _log_output(output_path, _context(request), f"timed out after {request.timeout:g} s")
            msg = f"{_where(request)}: build timed out after {request.timeout:g} s"
            raise BuildError(msg) from None
        except BaseException:
            _kill_group(process)
            raise


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """The build's session holds pip and the backend too: kill all of it, then reap."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def output_tail(path: Path) -> str:
    """The end of a build's output, bounded in lines and bytes: the error is at the end."""
    with path.open("rb") as stream:
        size = stream.seek(0, os.SEEK_END)
        stream.seek(max(0, size - TAIL_BYTES))
        data = stream.read()
    lines = data.decode("utf-8", "replace").splitlines()
    return "\n".join(lines[-TAIL_LINES:])


def _log_output(path: Path, context: dict[str, str], what: str) -> None:
    log.error("%s: build of %s %s; its output ends with:\n%s", context["REPO"], context["TAG"], what,
              output_tail(path), extra=context)


def verify(request: BuildRequest, paths: list[Path]) -> list[BuiltFile]:
    """Exactly one sdist and one wheel, each saying the expected name and version inside."""
    where = _where(request)
    kinds: dict[str, int] = {}
    built: list[BuiltFile] = []
    for path in paths:
        try:
            parsed = parse_filename(path.name)
            metadata = read_core_metadata(path)
        except InvalidDistributionError as error:
            msg = f"{where}: the build produced an unusable file: {error}"
            raise BuildError(msg) from None
        kinds[parsed.kind] = kinds.get(parsed.kind, 0) + 1
        if metadata.version != request.tag.version:
            msg = (
                f"{where}: {path.name} carries version {metadata.version}, "
                             f"the tag says {request.tag.version}"
            )
            raise BuildError(msg)
        if request.distribution and metadata.name != request.distribution:
            msg = (
                f"{where}: {path.name} is named {metadata.name!r}, "
                             f"the configuration says {request.distribution!r}"
            )
            raise BuildError(msg)
        if parsed.project != metadata.name:
            msg = f"{where}: {path.name} holds metadata for {metadata.name!r}"
            raise BuildError(msg)
        built.append(BuiltFile(path, metadata.name, metadata.version))
    if kinds != {"sdist": 1, "wheel": 1}:
        msg = (
            f"{where}: expected one sdist and one wheel, got "
                         f"{', '.join(p.name for p in paths) or 'nothing'}"
        )
        raise BuildError(msg)
    return built


def new_workdir(parent: Path) -> Path:
    """A private directory per build under the cache; the runner clears leftovers of killed runs."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="build-", dir=parent))
