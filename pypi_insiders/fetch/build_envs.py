"""Isolated build environments made from a local cache, so a build does not install its backend.

`python -m build` with isolation creates two fresh venvs per tag (one for the sdist, one for
the wheel), each seeded with pip by ensurepip and then filled by pip from the index: about ten
seconds before the backend runs at all. Here the isolation is kept, made cheaper:

- The build requirements of `[build-system]` (PEP 518's default when absent) are resolved once
  into wheels under `<cache>/build-envs/wheels` (from pip's index as configured, the way the
  isolated build would have got them, by the venv's own pip from ensurepip: the host's pip is
  not needed), then installed into a template venv that has no system site-packages (and no
  pip left), keyed by a hash of the requirements and the interpreter: new or changed
  requirements give a new key, and wheels already cached are used offline first.
- Every build runs in its own copy of that template: build's command line (`build.__main__`,
  with `--no-isolation`) in the copy's interpreter, the frontend (Debian's build and what it
  imports) put on that one process's path from a directory of links. The backend's hooks run
  in a child interpreter of the copy that sees its site-packages and the standard library only.

Everything under `<cache>/build-envs` is derived and may be deleted; it is made again when
needed. `prepare` raises EnvUnavailable when the cache cannot be filled, e.g. no index reachable
for a requirement never cached: a sandboxed build then fails saying so (it has no network to
fetch anything), an unsandboxed one falls back to `python -m build` with its own isolation.
Requirements are only ever installed from wheels, so no build requirement runs code outside the
sandbox; a sandboxed build sees its template read-only instead of a copy, so no build can change
an environment another build uses.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from pypi_insiders.files import atomic_write, exclusive_lock

log = logging.getLogger(__name__)

# PEP 518: a project without [build-system] is built with setuptools' legacy backend.
DEFAULT_REQUIRES = ["setuptools>=40.8.0", "wheel"]
FRONTEND_MODULES = ("build", "pep517", "pyproject_hooks", "packaging")
READY = "ready"
# `python -m build`, with the frontend's links on this process's path only (the hooks' child
# interpreter does not inherit sys.path, as it would PYTHONPATH or a .pth file)
LAUNCH = ("import runpy, sys; sys.path.append(sys.argv.pop(1)); sys.argv[0] = 'build'; "
          "runpy.run_module('build', run_name='__main__', alter_sys=True)")


class EnvUnavailable(Exception):  # noqa: N818 - a condition the caller handles, not a failure
    """No cached environment can be had for these requirements; the message says why."""


def build_requires(project_dir: Path) -> list[str] | None:
    """The static build requirements, or None when `[build-system]` is not a valid table.

    EnvUnavailable names the file and the line when pyproject.toml cannot be read.
    """
    path = project_dir / "pyproject.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return list(DEFAULT_REQUIRES)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        msg = f"pyproject.toml: {error}"
        raise EnvUnavailable(msg) from None
    system = data.get("build-system")
    if system is None:
        return list(DEFAULT_REQUIRES)
    requires = system.get("requires") if isinstance(system, dict) else None
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        return None
    return sorted({r.strip() for r in requires})


def env_key(requires: list[str]) -> str:
    """Same requirements on the same interpreter and frontend, same environment."""
    identity = {"requires": requires, "python": sys.version, "executable": sys.executable,
                "frontend": [str(p) for p in frontend_paths()]}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]


def frontend_paths() -> list[Path]:
    """Where this interpreter's `build` and what it imports live (package directories)."""
    found = []
    for name in FRONTEND_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            found.append(Path(next(iter(spec.submodule_search_locations))))
    return found


@dataclass(frozen=True)
class Prepared:
    directory: Path  # the environment: a fresh copy, or the template itself when it is not copied
    command: list[str]  # runs `python -m build` in it


def prepare(root: Path, project_dir: Path, dest: Path | None, env: dict[str, str], timeout: float, *,
            extra: Sequence[str] = ()) -> Prepared:
    """The cached environment for the project's requirements (and `extra` ones), made when missing.

    `dest`: where to copy it, for a build that could otherwise change it; None when the build
    sees the template read-only (sandboxed builds), which is also faster. EnvUnavailable: why not.
    """
    requires = build_requires(project_dir)
    if requires is None:
        msg = "pyproject.toml: no valid [build-system] table"
        raise EnvUnavailable(msg)
    extra = [*extra, *learnt_extra(root, requires)]
    requires = sorted({*requires, *extra})
    template = root / "envs" / env_key(requires)
    root.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(root / "lock"):
        if not (template / READY).exists():
            _create(root, template, requires, env, timeout)
    directory = template
    if dest is not None:
        shutil.copytree(template, dest, symlinks=True)
        directory = dest
    return Prepared(directory, [str(directory / "bin" / "python"), "-c", LAUNCH, str(directory / "frontend")])


def learnt_extra(root: Path, requires: list[str]) -> list[str]:
    """Requirements a backend asked for beyond these static ones at an earlier build (remember_extra)."""
    try:
        found = json.loads((root / "extra" / env_key(requires)).read_text())
    except (OSError, ValueError):
        return []
    return [str(r) for r in found] if isinstance(found, list) else []


def remember_extra(root: Path, project_dir: Path, extra: list[str]) -> None:
    """The next build with the same static requirements gets these from the start (setuptools < 70
    asks for `wheel` at build time): one build instead of a failed one and a second."""
    requires = build_requires(project_dir)
    if requires is None:
        return
    path = root / "extra" / env_key(requires)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(sorted(extra)).encode() + b"\n")


def _create(root: Path, template: Path, requires: list[str], env: dict[str, str], timeout: float) -> None:
    """Make the template: a venv, the requirements from the wheel cache, links to the frontend."""
    shutil.rmtree(template, ignore_errors=True)  # a template left half-made by a killed run
    template.parent.mkdir(parents=True, exist_ok=True)
    log.info("build environment for %s: creating %s", ", ".join(requires) or "no requirements", template.name,
             extra={"STEP": "build-env"})
    try:
        # pip only to fill it: the venv's own, from ensurepip (the host's pip is not a dependency)
        _run([sys.executable, "-m", "venv", *([] if requires else ["--without-pip"]), str(template)],
             env, timeout)
        if requires:
            _install(root / "wheels", template, requires, env, timeout)
        _link_frontend(template)
    except (OSError, subprocess.SubprocessError) as error:
        shutil.rmtree(template, ignore_errors=True)
        msg = f"build environment {template.name} cannot be made: {error}"
        raise EnvUnavailable(msg) from None
    except EnvUnavailable:
        shutil.rmtree(template, ignore_errors=True)
        raise
    (template / READY).write_text(json.dumps({"requires": requires}) + "\n")


def _install(wheels: Path, template: Path, requires: list[str], env: dict[str, str], timeout: float) -> None:
    """Install from wheels only (no build requirement's code runs here), filling the cache first.

    The wheel cache comes first, then the places pip is configured to find wheels in
    (PIP_FIND_LINKS, e.g. Debian's /usr/share/python-wheels with PIP_NO_INDEX), then its index.
    """
    wheels.mkdir(parents=True, exist_ok=True)
    pip = [str(template / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "--no-input"]
    # as build does: ensurepip's setuptools must not stand in for the one the project asks for
    _run([*pip, "uninstall", "--yes", "setuptools"], env, timeout, check=False)
    links = [arg for place in [str(wheels), *_find_links(env)] for arg in ("--find-links", place)]
    offline = [*pip, "install", "--no-index", "--only-binary", ":all:", *links, "--no-warn-script-location",
               *requires]
    if _run(offline, env, timeout, check=False).returncode != 0:
        fill = [*pip, "download", "--only-binary", ":all:", "--dest", str(wheels), *links, *requires]
        filled = _run(fill, env, timeout, check=False)
        if filled.returncode != 0:
            msg = (f"build requirements {', '.join(requires)} cannot be had as wheels (pip says: "
                   f"{_last_line(filled.stderr or filled.stdout)})")
            raise EnvUnavailable(msg)
        _run(offline, env, timeout)
    if "pip" not in {_name(r) for r in requires}:  # smaller copies, and no pip the project did not ask for
        _run([*pip, "uninstall", "--yes", "pip"], env, timeout)


def _find_links(env: dict[str, str]) -> list[str]:
    """PIP_FIND_LINKS as pip reads it: places separated by white space."""
    return env.get("PIP_FIND_LINKS", "").split()


def _name(requirement: str) -> str:
    try:
        return canonicalize_name(Requirement(requirement).name)
    except InvalidRequirement:
        return ""


def _link_frontend(template: Path) -> None:
    """The frontend's packages as links in one directory, for LAUNCH to put on its path."""
    frontend = template / "frontend"
    frontend.mkdir()
    for path in frontend_paths():
        (frontend / path.name).symlink_to(path, target_is_directory=True)


def _run(argv: list[str], env: dict[str, str], timeout: float, *,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, env=env, timeout=timeout, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, check=False, cwd="/")
    if check and done.returncode != 0:
        msg = f"{' '.join(argv[:4])} exited with status {done.returncode}: {_last_line(done.stderr)}"
        raise subprocess.SubprocessError(msg)
    return done


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


def isolated_env(env: dict[str, str]) -> dict[str, str]:
    """The build's environment without what would add the system's modules to the copy's path."""
    return {k: v for k, v in env.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}

