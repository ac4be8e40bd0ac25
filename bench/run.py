"""The benchmark of issue 2: our index beside pypiserver, a bare waitress ceiling and nginx.

Usage (from the repository root; needs wrk, nginx and the package registry once, for pypiserver):

    .venv/bin/python -m bench.run                          # full run: 2,000 and 20,000 projects
    .venv/bin/python -m bench.run --duration 3 --corpus 200   # quick run, a couple of minutes
    .venv/bin/python -m bench.run --only ours,nginx --connections 16

For each corpus (made once and cached under --workdir), one server at a time on the same
files: ours (started cold on a fresh state directory, stopped, then started again warm and
measured), the ceiling and nginx (both on the index ours generated), pypiserver. Each gets
wrk runs (one project page, the root list, a rotation over every project, at each
concurrency), start to first answer, a new file's time to appear (ours and pypiserver; nginx
and the ceiling only serve what ours generates), `pip download` and `uv pip install` of one
project, and resident memory after the load. It prints a table with ours as a ratio to each
other server, PASS/FAIL for the Targets, and writes everything to bench/out/ as JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from bench import corpus as corpora
from bench import measure, report, servers
from bench.load import run_wrk

OUT = Path(__file__).resolve().parent / "out"
# Corpora and throwaway venvs are cached here between runs; never inside the repository.
WORKDIR = Path("/tmp/pypi-insiders-bench")  # noqa: S108


@dataclass(frozen=True)
class Settings:
    duration: float
    connections: tuple[int, ...]
    only: tuple[str, ...]
    runs: int
    workdir: Path
    start_timeout: float


@dataclass(frozen=True)
class Paths:
    """The request paths of one corpus: one project page, the root list, all pages shuffled."""

    project: str  # the raw (unnormalized) name, as a user would type it to pip
    rotation: list[str]

    @property
    def project_page(self) -> str:
        return f"/simple/{canonicalize_name(self.project)}/"


def corpus_paths(corpus: corpora.Corpus) -> Paths:
    middle = len(corpus.names) // 2 // 5 * 5  # style 0: `Bench_Proj_NNNNN`, the least normalized
    rotation = [f"/simple/{name}/" for name in corpus.normalized]
    random.Random(0).shuffle(rotation)  # noqa: S311 (a fixed, repeatable order)
    return Paths(corpus.names[middle], rotation)


def run_loads(server: servers.Server, paths: Paths, settings: Settings) -> list[dict[str, object]]:
    scenarios = {"project": [paths.project_page], "root": ["/simple/"], "rotation": paths.rotation}
    out: list[dict[str, object]] = []
    for scenario, scenario_paths in scenarios.items():
        for conns in settings.connections:
            result = run_wrk(server.url, scenario, scenario_paths, conns, settings.duration)
            print(f"  {server.name:10} {scenario:8} c{conns:<3} {result.rps:10.1f} rps  "
                  f"p50 {result.p50_ms:8.2f} ms  p99 {result.p99_ms:8.2f} ms  errors {result.errors}")
            out.append(result.as_dict())
            measure.settle(server, paths.project_page, timeout=settings.start_timeout)
    return out


def bench_server(server: servers.Server, corpus: corpora.Corpus, paths: Paths, settings: Settings,
                 *, fresh: Path | None) -> dict[str, Any]:
    """Every figure for one running server; `start_s` is taken first, while it is still starting."""
    figures: dict[str, Any] = {"pid": server.pid}
    figures["start_s"] = measure.first_answer(server, "/simple/", settings.start_timeout)
    print(f"  {server.name:10} first answer after {figures['start_s']} s")
    if figures["start_s"] is None:
        print(f"  {server.name} did not answer; its log: {server.log}")
        return figures
    figures["load"] = run_loads(server, paths, settings)
    figures["rss_mb"] = measure.rss_mb(server.pid)
    if fresh is not None:
        figures["fresh_s"] = measure.freshness(server, corpus, paths.project, fresh, timeout=120)
        print(f"  {server.name:10} new file visible after {figures['fresh_s']} s")
    installs = measure.install_times(server, paths.project, settings.runs, timeout=300)
    figures.update({f"{tool}_s": seconds for tool, seconds in installs.items()})
    print(f"  {server.name:10} pip {installs['pip']} s, uv {installs['uv']} s, RSS {figures['rss_mb']} MB")
    return figures


def bench_ours(corpus: corpora.Corpus, paths: Paths, settings: Settings, state: Path) -> dict[str, Any]:
    """Cold start on a fresh state directory (generates everything), then measured warm."""
    with servers.ours(state, corpus.store) as cold:
        cold_s = measure.first_answer(cold, "/simple/", settings.start_timeout)
        print(f"  ours       cold start: first answer after {cold_s} s")
    if cold_s is None:
        return {"start_cold_s": None}
    with servers.ours(state, corpus.store) as warm:
        figures = bench_server(warm, corpus, paths, settings, fresh=corpus.store / paths.project)
    figures["start_cold_s"] = cold_s
    return figures


def bench_corpus(projects: int, settings: Settings) -> dict[str, Any]:
    started = time.monotonic()
    corpus = corpora.make(settings.workdir / f"corpus-{projects}", projects)
    measure.remove_stale_fresh_files(corpus)
    print(f"corpus {projects}: {corpus.files} files ready after {time.monotonic() - started:.1f} s")
    paths = corpus_paths(corpus)
    state = settings.workdir / f"state-{projects}"
    shutil.rmtree(state, ignore_errors=True)
    results: dict[str, Any] = {}
    if "ours" in settings.only:
        results["ours"] = bench_ours(corpus, paths, settings, state)
    else:
        config = servers.write_config(state, corpus.store, servers.free_port())
        servers.generate(config, settings.start_timeout)
    index, logs = state / "index", settings.workdir / "logs"
    others: dict[str, Callable[[], AbstractContextManager[servers.Server]]] = {
        "ceiling": lambda: servers.ceiling(index, corpus.store, logs / f"ceiling-{projects}.log"),
        "nginx": lambda: servers.nginx(settings.workdir / f"nginx-{projects}", index, corpus.store),
        "pypiserver": lambda: servers.pypiserver(settings.workdir / "pypiserver-venv", corpus.flat,
                                                 logs / f"pypiserver-{projects}.log"),
    }
    for name, start in others.items():
        if name in settings.only:
            with start() as server:
                fresh = corpus.flat if name == "pypiserver" else None
                results[name] = bench_server(server, corpus, paths, settings, fresh=fresh)
    return results


def _csv(kind: Callable[[str], Any]) -> Callable[[str], tuple[Any, ...]]:
    return lambda text: tuple(kind(part) for part in text.split(",") if part)


def parse_args(argv: list[str] | None) -> tuple[tuple[int, ...], Settings]:
    parser = argparse.ArgumentParser(description="Benchmark our index against a waitress ceiling, "
                                     "nginx and pypiserver (see bench/README.md).")
    parser.add_argument("--corpus", type=_csv(int), default=(2000, 20000), help="project counts")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=_csv(int), default=(16, 64))
    parser.add_argument("--only", type=_csv(str), default=report.SERVERS,
                        help=f"comma-separated subset of {','.join(report.SERVERS)}")
    parser.add_argument("--runs", type=int, default=3, help="pip/uv runs per server (median)")
    parser.add_argument("--workdir", type=Path, default=WORKDIR)
    parser.add_argument("--start-timeout", type=float, default=600.0,
                        help="longest wait for a server's first answer (a cold start included)")
    args = parser.parse_args(argv)
    unknown = set(args.only) - set(report.SERVERS)
    if unknown:
        parser.error(f"unknown server(s) in --only: {', '.join(sorted(unknown))}")
    return args.corpus, Settings(args.duration, args.connections, args.only, args.runs, args.workdir,
                                 args.start_timeout)


def _each_corpus(projects: tuple[int, ...], settings: Settings) -> Iterator[tuple[int, dict[str, Any]]]:
    for count in projects:
        yield count, bench_corpus(count, settings)


def main(argv: list[str] | None = None) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress while it runs
    projects, settings = parse_args(argv)
    started = time.monotonic()
    all_results: dict[str, Any] = {"settings": {**settings.__dict__, "workdir": str(settings.workdir)},
                                   "corpora": {}}
    summaries: list[str] = []
    failed = False
    for count, results in _each_corpus(projects, settings):
        all_results["corpora"][str(count)] = results
        found = report.targets(results, count, settings.connections)
        failed |= not all(t.passed for t in found)
        summaries.append(f"\n== {count} projects x 10 files\n"
                         f"{report.table(results, settings.connections)}\n\n{report.format_targets(found)}")
    all_results["seconds"] = time.monotonic() - started
    OUT.mkdir(exist_ok=True)
    out = OUT / f"results-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(all_results, indent=2, default=str))
    print("\n".join(summaries))
    print(f"\nwhole run: {all_results['seconds']:.0f} s; results in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
