"""One build of one tag: check it out, run `python -m build` in its sandbox, check what came out.

The tag is a real git checkout (checkout.py), so backends and version scripts that ask git see
the tag; the pretend-version variables (setuptools-scm, hatch-vcs, pdm-backend) stay as a
second line. SOURCE_DATE_EPOCH comes from the tag's commit so rebuilding a tag gives the same
bytes where the backend allows it. The build runs in a bubblewrap sandbox (sandbox.py) with
its requirements installed beforehand (build_envs.py), in its own session, so a time-out
kills every process it started. Nothing here touches the store: the caller publishes the
verified files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import NormalizedName
from packaging.version import Version

from pypi_insiders.errors import BuildError, InvalidDistributionError
from pypi_insiders.fetch import build_envs, build_output, checkout
from pypi_insiders.fetch.sandbox import Sandbox, interpreter_paths, sandbox_env
from pypi_insiders.fetch.versions import TagVersion
from pypi_insiders.metadata import read_core_metadata
from pypi_insiders.store import parse_filename

log = logging.getLogger(__name__)



class BuildFailedError(BuildError):
    """The build command failed; `cause` is the line of its output that says why (journal's CAUSE)."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


@dataclass(frozen=True, kw_only=True)
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
    sandbox: Sandbox | None = None  # None: unsandboxed, only when `[fetch] sandbox = "off"` says so
    settings: Mapping[str, str] = field(default_factory=dict)  # [fetch.build_env]: pip's, over ours


@dataclass(frozen=True)
class BuiltFile:
    path: Path
    name: NormalizedName
    version: Version


def build(request: BuildRequest) -> list[BuiltFile]:
    """Build the tag's sdist and wheel and return them verified; BuildError says what went wrong."""
    source, outdir = request.workdir / "src", request.workdir / "dist"
    outdir.mkdir()
    try:
        epoch = checkout.checkout(request.mirror, request.tag.commit, source, request.timeout)
    except BuildError as error:
        msg = f"{_where(request)}: {error}"
        raise BuildError(msg) from None
    project_dir = source / request.subdirectory if request.subdirectory else source
    if not project_dir.is_dir():
        raise BuildError(_where(request) + f": no directory {request.subdirectory!r} in the tag's tree")
    run_build(request, project_dir, outdir, epoch)
    return verify(request, sorted(outdir.iterdir()))


def _where(request: BuildRequest) -> str:
    return f"repository {request.repo_key} tag {request.tag.tag}"


def build_env(request: BuildRequest, epoch: int) -> dict[str, str]:
    """The service's environment plus the version for scm backends, minus our credentials."""
    version = str(request.tag.version)
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    env.update(request.settings)
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
    """Build in the sandbox with its cached environment; unsandboxed as before when it is off."""
    log.info("%s: building %s (version %s)", request.repo_key, request.tag.tag, request.tag.version,
             extra=_context(request))
    env = build_env(request, epoch)
    argv = [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(outdir), str(project_dir)]
    if request.sandbox is not None:
        status = _build_sandboxed(request, request.sandbox, argv, project_dir, env)
    else:
        cached = _build_in_cached_env(request, argv, project_dir, env)
        status = _run_logged(request, argv, project_dir, env) \
            if cached is None or _fall_back(request, cached, outdir) else cached
    if status != 0:
        log_path = request.workdir / "build.log"
        _log_output(log_path, _context(request), f"exited with status {status}")
        cause = build_output.failure_cause(log_path, request.workdir / "src")
        msg = f"{_where(request)}: build failed (exit status {status}): {cause}"
        raise BuildFailedError(msg, cause)


def _build_sandboxed(request: BuildRequest, sandbox: Sandbox, argv: list[str], project_dir: Path,
                     env: dict[str, str]) -> int:
    """The build in the sandbox, its requirements installed beforehand: it has no network.

    A backend asking for more than its static requirements (build says "Missing dependencies")
    gets an environment with those too, once.
    """
    if request.build_envs is None:
        msg = f"{_where(request)}: a sandboxed build needs the build environment cache"
        raise BuildError(msg)
    extra: list[str] = []
    while True:
        try:
            prepared = build_envs.prepare(request.build_envs, project_dir, None, env, request.timeout,
                                           extra=extra)
        except build_envs.EnvUnavailable as error:
            msg = f"{_where(request)}: {error}"
            raise BuildError(msg) from None
        inside = sandbox_env(build_envs.isolated_env(env))
        command = sandbox.wrap([*prepared.command, "--no-isolation", *argv[3:]], project_dir,
                               writable=[request.workdir / "src", Path(argv[argv.index("--outdir") + 1])],
                               readonly=[prepared.directory, request.mirror, *interpreter_paths(),
                                         *build_envs.frontend_paths()])
        status = _run_logged(request, command, project_dir, inside)
        missing = build_output.missing_dependencies(request.workdir / "build.log") if status else []
        if not missing or extra:
            if status == 0 and extra:
                build_envs.remember_extra(request.build_envs, project_dir, extra)
            return status
        log.info("%s: %s asks for build dependencies beyond [build-system].requires (%s); building it in "
                 "an environment with those", request.repo_key, request.tag.tag, ", ".join(missing),
                 extra=_context(request))
        extra = missing


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
    try:
        prepared = build_envs.prepare(request.build_envs, project_dir, request.workdir / "env", env,
                                      request.timeout)
    except build_envs.EnvUnavailable as error:
        log.warning("%s: %s; building with isolation by build itself", request.repo_key, error,
                    extra=_context(request))
        return None
    fast = [*prepared.command, "--no-isolation", *argv[3:]]
    return _run_logged(request, fast, project_dir, build_envs.isolated_env(env))


def _fall_back(request: BuildRequest, status: int, outdir: Path) -> bool:
    """A backend asking for more than its static requirements gets build's own isolation instead."""
    if status == 0 or build_output.MISSING_DEPENDENCIES not in (request.workdir / "build.log").read_bytes():
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


def _log_output(path: Path, context: dict[str, str], what: str) -> None:
    log.error("%s: build of %s %s; its output ends with:\n%s", context["REPO"], context["TAG"], what,
              build_output.output_tail(path), extra=context)


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
                f"{where}: {path.name} is named {metadata.name!r}, this repository publishes "
                f"{request.distribution!r} (configured, or learnt at its first build); nothing published"
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
