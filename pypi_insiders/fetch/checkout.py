"""A real git checkout of one tag, made from the mirror, for the build to run in.

Build backends and version scripts ask git themselves (pdm-backend's `source = "call"` getters,
dunamai and uv-dynamic-versioning run `git describe`), so an exported tree without `.git` builds
the wrong version or none. Here the mirror is cloned with `git clone --shared`: the checkout's
objects stay in the mirror (read through `objects/info/alternates`, nothing copied), every tag
comes along, and the clone's config is left with no remote (so no URL, and never a credential,
since the mirror never holds one). The build can write its checkout, not the mirror: the
sandbox binds the mirror read-only (sandbox.py).

Symlinks are checked after the checkout: one with an absolute target, or one that resolves
outside the tree, fails the tag, so no file outside it can reach a published archive.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from dulwich.objects import Commit
from dulwich.repo import Repo

from pypi_insiders.errors import BuildError

GIT = "git"


def git_env() -> dict[str, str]:
    """git on its own: no user or system config, no prompt, no pager, C messages."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C",
            "HOME": os.devnull}


def commit_time(mirror: Path, commit_sha: str) -> int:
    """The commit's time, for SOURCE_DATE_EPOCH."""
    repo = Repo(str(mirror))
    try:
        commit = repo[commit_sha.encode()]
        if not isinstance(commit, Commit):
            msg = f"{commit_sha}: not a commit"
            raise BuildError(msg)
        return int(commit.commit_time)
    finally:
        repo.close()  # type: ignore[no-untyped-call]


def checkout(mirror: Path, commit_sha: str, dest: Path, timeout: float) -> int:
    """Clone the mirror into `dest` at the commit (detached, tags kept); return the commit time."""
    epoch = commit_time(mirror, commit_sha)
    _git(["clone", "--quiet", "--shared", "--no-checkout", str(mirror), str(dest)], Path("/"), timeout)
    _git(["remote", "remove", "origin"], dest, timeout)
    _git(["-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", commit_sha], dest, timeout)
    check_symlinks(dest)
    return epoch


def _git(args: list[str], cwd: Path, timeout: float) -> None:
    try:
        done = subprocess.run([GIT, *args], cwd=cwd, env=git_env(), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        msg = "git is not installed; the fetcher needs it to check out tags (apt-get install git)"
        raise BuildError(msg) from None
    except subprocess.TimeoutExpired:
        msg = f"git {args[0]} timed out after {timeout:g} s"
        raise BuildError(msg) from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        msg = f"git {args[0]} failed: {lines[-1] if lines else f'exit status {done.returncode}'}"
        raise BuildError(msg)


def check_symlinks(root: Path) -> None:
    """Every symlink's target is relative and stays inside `root`, links followed as the kernel would."""
    real_root = root.resolve()
    for directory, dirnames, filenames in os.walk(root):
        if Path(directory) == root and ".git" in dirnames:
            dirnames.remove(".git")
        for name in [*dirnames, *filenames]:
            path = Path(directory, name)
            if not path.is_symlink():
                continue
            relative = path.relative_to(root)
            target = path.readlink()
            if target.is_absolute():
                msg = f"the tree holds a symlink {relative} with an absolute target ({target})"
                raise BuildError(msg)
            resolved = Path(os.path.realpath(path))
            if resolved != real_root and real_root not in resolved.parents:
                msg = f"the tree holds a symlink {relative} that points outside it ({target})"
                raise BuildError(msg)
