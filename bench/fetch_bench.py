"""The fetcher's benchmark (issue 3), run on demand, not a test:

    .venv/bin/python -m bench.fetch_bench [--repos 50] [--workdir DIR]

1. A run with nothing new over N watched repositories served by a loopback smart-HTTP git
   server with basic auth (and again over file://). Every repository has a tag whose wheel is
   already in the store, so the first run fetches and builds nothing new; the second run is the
   one measured. Target: under 5 s, and no pack requested (objects transferred: none).
2. A tag of a small setuptools (+ setuptools-scm) project pushed to a real `pip install` of it
   from a real `pypi-insiders serve` succeeding, split into the build (the environment and
   the `python -m build` subprocess), the rest of the update and the generation, and pip.
   Target (issue 10): under 4 s. Measured sandboxed (the default: bubblewrap, the cached build
   environment bound read-only), unsandboxed in a copy of it (`sandbox = "off"`) and with
   build's own isolation (as before issue 10); the first build of each fills the caches (cold).
   Needs pip's index for the build requirements.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from pypi_insiders import config
from pypi_insiders.fetch import build_envs, builder, git, runner
from tests.conftest import to_toml
from tests.support import git_fixtures as g
from tests.support.distfiles import make_sdist, make_wheel
from tests.support.server_fixtures import VENV_BIN, request, serve_process, service_env

TOKEN = "bench-token"  # noqa: S105 - a loopback test server's token


def write_config(workdir: Path, repos: dict[str, dict[str, str]],
                 fetch: dict[str, str] | None = None) -> Path:
    data: dict[str, Any] = {
        "server": {"listen": "127.0.0.1:0"},
        "paths": {"data": str(workdir / "data"), "cache": str(workdir / "cache")},
        "upstream": {"url": "http://127.0.0.1:9/simple/", "fallback": "off"},
        "index": {"debounce": 0.05},
        "fetch": {"repos_dir": str(workdir / "repos.d"), "credentials_dir": str(workdir / "credentials"),
                  **(fetch or {})},
        "repos": repos,
    }
    path = workdir / "config.toml"
    path.write_text(to_toml(data))
    credentials = workdir / "credentials"
    credentials.mkdir(exist_ok=True)
    (credentials / "tok").write_text(TOKEN)
    (credentials / "tok").chmod(0o600)
    return path


def make_repos(root: Path, count: int) -> dict[str, Path]:
    repos = {}
    for number in range(count):
        name = f"bench-{number:03d}"
        repo = g.init_repo(root / name, {**g.intree_files(name), "CHANGELOG": "history\n" * 50})
        for minor in range(3):
            g.commit_files(repo, {"CHANGELOG": f"release 1.{minor}\n"})
            g.tag(repo, f"v1.{minor}")
        repos[name] = repo
    return repos


def seed_store(store: Path, names: list[str]) -> None:
    """Wheels for every tagged version, as if built before: the runs build nothing."""
    for name in names:
        for minor in range(3):
            make_wheel(store / name, name, f"1.{minor}")
            make_sdist(store / name, name, f"1.{minor}")


def nothing_new(workdir: Path, count: int, transport: str) -> dict[str, float]:
    repos = make_repos(workdir / "upstream", count)
    seed_store(workdir / "data" / "store", list(repos))
    with ExitStack() as stack:
        if transport == "http":
            server = stack.enter_context(g.git_http_server(repos, "x-access-token", TOKEN))
            table = {name: {"url": f"{server.url}/{name}", "credential": "tok", "distribution": name}
                     for name in repos}
        else:
            table = {name: {"url": f"file://{path}", "distribution": name} for name, path in repos.items()}
        loaded = config.load(str(write_config(workdir, table)))
        started = time.monotonic()
        assert runner.cli_update(loaded, []) == 0
        first = time.monotonic() - started
        objects = sum(g.object_count(git.mirror_path(loaded, key)) for key in repos)
        posts = server.upload_pack_posts() if transport == "http" else 0
        started = time.monotonic()
        assert runner.cli_update(loaded, []) == 0
        second = time.monotonic() - started
        objects_after = sum(g.object_count(git.mirror_path(loaded, key)) for key in repos)
        posts_after = server.upload_pack_posts() if transport == "http" else 0
    return {"first_run_s": first, "nothing_new_s": second, "objects_transferred": objects_after - objects,
            "packs_requested": posts_after - posts}


@contextmanager
def timed_builds(durations: list[float]) -> Iterator[None]:
    """Record how long each `python -m build` subprocess takes, without changing what it does."""
    original = builder.run_build

    def timed(*args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - same signature as the original
        started = time.monotonic()
        try:
            original(*args, **kwargs)
        finally:
            durations.append(time.monotonic() - started)

    builder.run_build = timed
    try:
        yield
    finally:
        builder.run_build = original


@contextmanager
def own_isolation(enabled: bool) -> Iterator[None]:
    """When enabled, every build uses build's own isolation (no cached environment), as before issue 10."""
    original = build_envs.prepare
    if enabled:
        def unavailable(*_args: Any, **_kwargs: Any) -> build_envs.Prepared:  # noqa: ANN401
            msg = "no cached environment in this measurement"
            raise build_envs.EnvUnavailable(msg)

        build_envs.prepare = unavailable
    try:
        yield
    finally:
        build_envs.prepare = original


# How a build runs: in the sandbox (the default), unsandboxed in a copy of the cached environment,
# or unsandboxed with build's own isolation (as before issue 10).
MODES: dict[str, dict[str, str]] = {"sandboxed": {}, "unsandboxed": {"sandbox": "off"},
                                    "build's own": {"sandbox": "off"}}


def tag_to_installable(workdir: Path, *, isolation: str) -> dict[str, float]:
    """A small setuptools (+ setuptools-scm) project: v1.0 built first (filling the caches), v1.1 timed."""
    repo = g.init_repo(workdir / "upstream" / "fresh", g.backend_files("setuptools", "fresh-pkg"))
    g.tag(repo, "v1.0")
    config_path = write_config(workdir, {"fresh": {"url": f"file://{repo}", "distribution": "fresh-pkg"}},
                               MODES[isolation])
    loaded = config.load(str(config_path))
    durations: list[float] = []
    with own_isolation(isolation == "build's own"), timed_builds(durations):
        assert runner.cli_update(loaded, []) == 0
        first_build = durations[-1]
        with serve_process(config_path) as served:
            g.commit_files(repo, {"CHANGELOG": "1.1\n"})
            g.tag(repo, "v1.1")
            pushed = time.monotonic()
            assert runner.cli_update(loaded, []) == 0
            updated = time.monotonic()
            listed = _wait_listed(served.url, "fresh_pkg-1.1-py3-none-any.whl")
            _pip_install(served.url, "fresh-pkg==1.1")
            installed = time.monotonic()
    build = durations[-1]
    return {"first_build_s": first_build, "build_s": build, "update_s": updated - pushed,
            "push_to_listed_s": listed - pushed, "overhead_s": listed - pushed - build,
            "pip_install_s": installed - listed, "push_to_installed_s": installed - pushed}


def _wait_listed(url: str, wheel: str) -> float:
    deadline = time.monotonic() + 30
    while wheel.encode() not in request(url, "/simple/fresh-pkg/").body:
        assert time.monotonic() < deadline, "the wheel never appeared on the index"
        time.sleep(0.01)
    return time.monotonic()


def _pip_install(url: str, requirement: str) -> None:
    with tempfile.TemporaryDirectory() as target:
        argv = [str(VENV_BIN / "python"), "-m", "pip", "install", "--no-cache-dir", "--no-deps",
                "--target", target, "--index-url", f"{url.rstrip('/')}/simple/", requirement]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=service_env(),
                              check=False)
    assert done.returncode == 0, done.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repos", type=int, default=50)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--tag-only", action="store_true", help="only the pushed tag to pip install")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="fetch-bench-") as scratch:
        base = args.workdir or Path(scratch)
        results = {}
        for transport in () if args.tag_only else ("http", "file"):
            results[transport] = nothing_new(base / f"nothing-new-{transport}", args.repos, transport)
        for isolation in MODES:
            results[isolation] = tag_to_installable(base / f"tag-{isolation.split()[0]}", isolation=isolation)
    for transport in () if args.tag_only else ("http", "file"):
        r = results[transport]
        ok = r["nothing_new_s"] < 5 and r["objects_transferred"] == 0 and r["packs_requested"] == 0
        print(f"nothing new, {args.repos} repos over {transport}: {r['nothing_new_s']:.2f} s "
              f"(first run {r['first_run_s']:.2f} s), objects transferred {r['objects_transferred']:.0f}, "
              f"packs requested {r['packs_requested']:.0f}  [{'PASS' if ok else 'FAIL'} < 5 s, none]")
    for isolation in MODES:
        t = results[isolation]
        ok = t["push_to_installed_s"] < 4
        print(f"tag pushed -> pip install done ({isolation} build): "
              f"{t['push_to_installed_s']:.2f} s "
              f"= build {t['build_s']:.2f} s + update/generation {t['overhead_s']:.2f} s + pip install "
              f"{t['pip_install_s']:.2f} s (first build, filling the caches: {t['first_build_s']:.2f} s)  "
              f"[{'PASS' if ok else 'FAIL'} < 4 s]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
