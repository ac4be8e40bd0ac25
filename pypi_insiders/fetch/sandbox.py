"""The sandbox every build runs in: bubblewrap, so repository code reaches nothing but its own tree.

A build runs code its repository controls (an in-tree backend, a setup.py, a compromised build
requirement) as the fetcher's user, who holds every repository's credential, the store and the
index. bubblewrap (Debian's `bubblewrap`) was chosen over a transient systemd unit per build
because it needs no system manager and no privilege: the fetch service (a system user, no
D-Bus session) and `pypi-insiders update` as a normal user both start it the same way, and its
namespaces die with the build. Inside:

- the whole file system read-only, with the fetcher's state, data, cache, store, index,
  configuration, credentials (`/run/credentials` too, and `$CREDENTIALS_DIRECTORY`), `/run`
  and home directories replaced by empty read-only file systems (a hidden file by an empty
  one), `/tmp` and `/var/tmp` by empty writable ones of its own;
- writable: the build's own checkout and output directory; read-only again: its build
  environment, its own mirror (the checkout's objects live there) and the interpreter;
- no network (a network namespace with loopback only), no capabilities, its own user, IPC and
  PID namespaces (the ones the fetch unit allows), so every process it starts is killed when it
  ends (`--die-with-parent`).

`[fetch] sandbox = "off"` builds without it, when set explicitly, with a warning on every run.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pypi_insiders.config import Config
from pypi_insiders.errors import BuildError

log = logging.getLogger(__name__)

BWRAP = "bwrap"
# sockets of other services (/run), every user's files: empty and read-only inside
ALWAYS_HIDDEN = ("/run", "/home", "/root", "/media", "/mnt")
# shared scratch space: an empty, writable one of the build's own
SCRATCH = ("/tmp", "/var/tmp")  # noqa: S108
PROBE_TIMEOUT = 30.0


class SandboxError(BuildError):
    """The build sandbox cannot be made on this host."""


@dataclass(frozen=True)
class Sandbox:
    hidden: tuple[Path, ...]  # absent inside: a directory becomes an empty tmpfs, a file an empty one
    how_to_allow: str  # the end of the refusal's line: what to change, and where

    def wrap(self, argv: list[str], cwd: Path, *, writable: Iterable[Path] = (),
             readonly: Iterable[Path] = ()) -> list[str]:
        """`argv` run inside the sandbox, in `cwd`, with these paths bound in."""
        return [BWRAP, *self.options(writable, readonly), "--chdir", str(cwd), "--", *argv]

    def options(self, writable: Iterable[Path], readonly: Iterable[Path]) -> list[str]:
        options = ["--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-net",
                   "--die-with-parent", "--new-session", "--cap-drop", "ALL",
                   "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        for scratch in SCRATCH:  # the build's own, empty and writable
            options += ["--tmpfs", scratch]
        hidden = _outermost(self.hidden)
        for path in hidden:
            options += (["--tmpfs", str(path)] if path.is_dir() else ["--ro-bind", os.devnull, str(path)])
        for path in readonly:
            options += ["--ro-bind", str(path), str(path)]
        for path in writable:
            options += ["--bind", str(path), str(path)]
        for path in hidden:  # last: the paths bound in above needed their mount points made
            if path.is_dir():
                options += ["--remount-ro", str(path)]
        return options

    def check(self) -> None:
        """Make the sandbox once with nothing in it; SandboxError says why it cannot be made."""
        if shutil.which(BWRAP) is None:
            msg = f"cannot build: bubblewrap (bwrap) is not installed; {self.how_to_allow}"
            raise SandboxError(msg)
        try:
            done = subprocess.run(self.wrap(["true"], Path("/")), stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False,
                                  env=_minimal_env())
        except subprocess.TimeoutExpired:
            msg = (f"cannot build: the build sandbox cannot be made (bwrap did not finish within "
                   f"{PROBE_TIMEOUT:g} s); {self.how_to_allow}")
            raise SandboxError(msg) from None
        except OSError as error:
            msg = f"cannot build: the build sandbox cannot be made ({error}); {self.how_to_allow}"
            raise SandboxError(msg) from None
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            why = lines[-1] if lines else f"exit status {done.returncode}"
            msg = (f"cannot build: the build sandbox cannot be made (bwrap: {why}); unprivileged user "
                   f"namespaces must be allowed (sysctl kernel.unprivileged_userns_clone=1, "
                   f"user.max_user_namespaces > 0; a unit's RestrictNamespaces= must allow user mnt pid net "
                   f"ipc, as the shipped fetch unit does); {self.how_to_allow}")
            raise SandboxError(msg)


# What a build may see of the fetcher's environment: the locale, the tools' usual settings and
# ours; never the rest (an administrator's shell may hold tokens a build would publish).
ENV_NAMES = frozenset({"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TERM", "SOURCE_DATE_EPOCH",
                       "CC", "CXX", "CFLAGS", "CXXFLAGS", "CPPFLAGS", "LDFLAGS", "MAKEFLAGS"})
ENV_PREFIXES = ("LC_", "PYTHON", "SETUPTOOLS_SCM_PRETEND_VERSION", "PDM_BUILD_SCM_VERSION")


def sandbox_env(env: dict[str, str]) -> dict[str, str]:
    """The build's environment inside the sandbox: the allowed names only, its own TMPDIR."""
    kept = {k: v for k, v in env.items() if k in ENV_NAMES or k.startswith(ENV_PREFIXES)}
    return {**kept, "TMPDIR": "/tmp"}  # noqa: S108 - the sandbox's own, empty tmpfs


def _minimal_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """Existing paths, without those inside another one (already hidden with it)."""
    existing = sorted({p for p in paths if p.is_absolute() and (p.exists() or p.is_symlink())})
    kept: list[Path] = []
    for path in existing:
        if not any(path == k or k in path.parents for k in kept):
            kept.append(path)
    return kept


def for_config(config: Config, *, warn: bool = True) -> Sandbox | None:
    """The sandbox the configuration asks for; None when `[fetch] sandbox = "off"` (warned, once a run)."""
    where = f"{config.path}" if config.path else "the configuration"
    if config.fetch.sandbox == "off":
        if not warn:
            return None
        log.warning("builds run WITHOUT a sandbox ([fetch] sandbox = \"off\" in %s): a watched repository's "
                    "build code can read every credential and write the store", where,
                    extra={"STEP": "sandbox"})
        return None
    how = (f"install bubblewrap and allow it, or set [fetch] sandbox = \"off\" in {where} to build "
           "unsandboxed (every build then runs with the fetcher's rights)")
    return Sandbox(tuple(hidden_paths(config)), how)


def hidden_paths(config: Config) -> list[Path]:
    """What a build must not see: everything the fetcher and the index own, secrets and homes."""
    paths = [config.paths.state, config.paths.store, config.paths.index, config.paths.cache,
             config.fetch.credentials_dir, config.fetch.repos_dir, config.upload.users_file,
             Path("/run/credentials"), Path("/etc/pypi-insiders"), Path.home(),
             *(Path(p) for p in ALWAYS_HIDDEN)]
    if config.path is not None:
        paths.append(config.path.parent)
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials:
        paths.append(Path(credentials))
    return [Path(os.path.realpath(p)) for p in paths]


def interpreter_paths() -> list[Path]:
    """The interpreter a build environment links to, bound back in wherever it lives (a home too)."""
    return [Path(sys.base_prefix)]
