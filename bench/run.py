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
import os
import random
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from bench import auth_load, measure, report, servers
from bench import corpus as corpora
from bench.load import LoadResult, run_wrk
from pypi_insiders.config.model import default_processes

OUT = Path(__file__).resolve().parent / "out"
SETTLE_TIMEOUT = 120.0  # pypiserver works off a queue of slow requests after each wrk run
Starter = Callable[[], AbstractContextManager[servers.Server]]
# Corpora and throwaway venvs are cached here between runs; never inside the repository.
WORKDIR = Path("/tmp/pypi-insiders-bench")  # noqa: S108


@dataclass(frozen=True)
class Settings:
    duration: float
    connections: tuple[int, ...]
    only: tuple[str, ...]
    runs: int
    rounds: int
    workdir: Path
    start_timeout: float
    fresh_state: bool
    processes: int | None
    access_log: bool = True


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


LoadRows = list[dict[str, object]]


def scenarios(paths: Paths) -> dict[str, list[str]]:
    """Name -> paths; a `-gzip` scenario sends `Accept-Encoding: gzip` (as pip and uv do)."""
    return {"project": [paths.project_page], "root": ["/simple/"], "rotation": paths.rotation,
            "project-gzip": [paths.project_page], "root-gzip": ["/simple/"]}


def run_loads(running: list[servers.Server], paths: Paths, settings: Settings) -> dict[str, LoadRows]:
    """Each scenario against each server in turn, so that all of them share the machine's moods.

    With several rounds the best round (most requests per second) of each server counts: other
    work on the machine only ever slows a round down.
    """
    out: dict[str, LoadRows] = {server.name: [] for server in running}
    for scenario, scenario_paths in scenarios(paths).items():
        encoding = "gzip" if scenario.endswith("-gzip") else ""
        for conns in settings.connections:
            rounds: dict[str, list[LoadResult]] = {server.name: [] for server in running}
            for turn in range(settings.rounds):
                for server in running if turn % 2 == 0 else running[::-1]:
                    result = run_wrk(server.url, scenario, scenario_paths, conns, settings.duration,
                                     encoding=encoding)
                    print(f"  {server.name:10} {scenario:8} c{conns:<3} {result.rps:10.1f} rps  "
                          f"p50 {result.p50_ms:8.2f} ms  p99 {result.p99_ms:8.2f} ms  errors {result.errors}")
                    rounds[server.name].append(result)
                    measure.settle(server, paths.project_page, timeout=SETTLE_TIMEOUT)
            for name, results in rounds.items():
                best = max(results, key=lambda r: r.rps)
                out[name].append({**best.as_dict(), "rounds_rps": [r.rps for r in results],
                                  "errors": sum(r.errors for r in results)})
    return out


def start_all(stack: ExitStack, starters: dict[str, Starter], settings: Settings,
              results: dict[str, dict[str, Any]]) -> list[servers.Server]:
    """Start each selected server and wait for its first answer before starting the next."""
    running: list[servers.Server] = []
    for name, start in starters.items():
        if name not in settings.only:
            continue
        server = stack.enter_context(start())
        figures = results.setdefault(name, {})
        figures["start_s"] = measure.first_answer(server, "/simple/", settings.start_timeout)
        print(f"  {name:10} first answer after {figures['start_s']} s")
        if figures["start_s"] is None:
            print(f"  {name} did not answer; its log: {server.log}")
        else:
            running.append(server)
    return running


def measure_after_load(running: list[servers.Server], corpus: corpora.Corpus, paths: Paths,
                       settings: Settings, results: dict[str, dict[str, Any]]) -> None:
    for server in running:
        results[server.name]["rss_mb"] = measure.rss_mb(server.pid)
        results[server.name]["pss_mb"] = measure.pss_mb(server.pid)
        print(f"  {server.name:10} after the load: RSS {results[server.name]['rss_mb']} MB, "
              f"PSS {results[server.name]['pss_mb']} MB (all processes)")
    fresh_dirs = {"ours": corpus.store / paths.project, "ours-1": corpus.store / paths.project,
                  "pypiserver": corpus.flat}
    for server in running:
        figures = results[server.name]
        if server.name in fresh_dirs:
            figures["fresh_s"] = measure.freshness(server, corpus, paths.project, fresh_dirs[server.name],
                                                   timeout=120)
            print(f"  {server.name:10} new file visible after {figures['fresh_s']} s")
    for tool in ("pip", "uv"):
        times: dict[str, list[float | None]] = {server.name: [] for server in running}
        if running:  # one untimed run first: pip's own start-up must not count against the first server
            measure.install_time(running[0], tool, paths.project, timeout=300)
        for turn in range(settings.runs):  # round-robin, in alternating order, as for the loads
            for server in running if turn % 2 == 0 else running[::-1]:
                times[server.name].append(measure.install_time(server, tool, paths.project, timeout=300))
        for name, runs in times.items():
            results[name][f"{tool}_s"] = measure.median_or_none(runs)
            results[name][f"{tool}_runs"] = runs
            print(f"  {name:10} {tool} median {results[name][f'{tool}_s']} s of {runs}")


def prepare_state(corpus: corpora.Corpus, settings: Settings, state: Path, paths: Paths) -> dict[str, Any]:
    """Ours' first start on this corpus: cold (no cache), or with the hash cache of an earlier run.

    The generated index is always deleted first, so every run serves pages made by the current
    code; only the sqlite cache of hashes and metadata (hours of hashing at 20,000 projects on
    a busy machine) is kept, unless --fresh-state.
    """
    cache = state / "cache" / "index.sqlite3"
    warm_cache = not settings.fresh_state and cache.exists()
    set_aside(state / "index" if warm_cache else state, settings.workdir)
    os.sync()  # the cold start begins on a clean page cache: nothing of earlier work to write back
    if "ours" not in settings.only:
        servers.generate(servers.write_config(state, corpus.store, servers.free_port()),
                         settings.start_timeout)
        return {}
    with servers.ours(state, corpus.store) as first:
        answer = measure.first_answer(first, paths.project_page, settings.start_timeout, any_status=True)
        seconds = measure.first_answer(first, "/simple/", settings.start_timeout)
        wal = measure.file_mb(state / "cache" / "index.sqlite3-wal")  # before the close checkpoints it
    key = "start_rebuild_s" if warm_cache else "start_cold_s"
    store_mb = measure.tree_mb(corpus.store)
    print(f"  ours       first start ({key}): first answer (503 while generating) after {answer} s, "
          f"first 200 of /simple/ (generation done) after {seconds} s; WAL {wal} MB, store {store_mb} MB")
    return {key: seconds, f"{key.removesuffix('_s')}_answer_s": answer, "wal_mb": wal, "store_mb": store_mb}


def trash(workdir: Path) -> Path:
    return workdir / "trash"


# ext4 without a journal (this VM's disk) skips inodes freed in the last 60 s, or in the last
# 360 s while their inode table block is dirty, each time it allocates one: after a delete of
# an earlier run's 180,000-file index, every file created scans past them. This VM's writeback
# left 470 MB dirty for many minutes, and creating files dirties those blocks again, so only
# the full 360 s after the delete, then a sync(), is safe. The same cold generation took 37 to
# 40 s on a quiet disk and 46 to 93 s within minutes of such deletes.
_DELETE_SETTLE_S = 360.0


def set_aside(path: Path, workdir: Path) -> None:
    """Move an earlier run's tree out of the way, to be deleted by the next run's start."""
    if path.exists():
        trash(workdir).mkdir(parents=True, exist_ok=True)
        path.rename(trash(workdir) / f"{path.name}-{time.time_ns()}")


def empty_trash(workdir: Path) -> None:
    """Delete what earlier runs set aside, then wait out the file system's memory of it (see
    _DELETE_SETTLE_S) before anything is measured."""
    if not trash(workdir).exists():
        return
    shutil.rmtree(trash(workdir), ignore_errors=True)
    os.sync()
    print(f"deleted earlier runs' state; waiting {_DELETE_SETTLE_S:.0f} s before measuring "
          "(freed inodes slow file creation on ext4 without a journal)")
    time.sleep(_DELETE_SETTLE_S)


def bench_corpus(projects: int, settings: Settings) -> dict[str, Any]:
    started = time.monotonic()
    corpus = corpora.make(settings.workdir / f"corpus-{projects}", projects)
    measure.remove_stale_fresh_files(corpus)
    print(f"corpus {projects}: {corpus.files} files ready after {time.monotonic() - started:.1f} s")
    paths = corpus_paths(corpus)
    state, logs = settings.workdir / f"state-{projects}", settings.workdir / "logs"
    results: dict[str, dict[str, Any]] = {"ours": prepare_state(corpus, settings, state, paths)}
    index = state / "index"
    starters: dict[str, Starter] = {
        "ours": lambda: servers.ours(state, corpus.store, settings.processes, access_log=settings.access_log),
        # its own state: one instance per state directory (its first run here generates cold)
        "ours-1": lambda: servers.ours(settings.workdir / f"state-{projects}-p1", corpus.store, 1,
                                       name="ours-1", access_log=settings.access_log),
        "ceiling": lambda: servers.ceiling(index, corpus.store, logs / f"ceiling-{projects}.log"),
        "nginx": lambda: servers.nginx(settings.workdir / f"nginx-{projects}", index, corpus.store),
        "pypiserver": lambda: servers.pypiserver(settings.workdir / "pypiserver-venv", corpus.flat,
                                                 logs / f"pypiserver-{projects}.log"),
    }
    token = auth_load.add_reader(state / "config.toml") if "ours" in settings.only else None
    with ExitStack() as stack:
        running = start_all(stack, starters, settings, results)
        for name, rows in run_loads(running, paths, settings).items():
            results[name]["load"] = rows
        for server in running:  # issue 8: a token read against an anonymous one, ours alone
            if server.name == "ours" and token is not None:
                results["ours"]["token_load"] = auth_load.run_pairs(
                    server, paths.project_page, token, connections=settings.connections,
                    duration=settings.duration, rounds=settings.rounds)
        measure_after_load(running, corpus, paths, settings, results)
    return {name: figures for name, figures in results.items() if name in settings.only}


def _csv(kind: Callable[[str], Any]) -> Callable[[str], tuple[Any, ...]]:
    return lambda text: tuple(kind(part) for part in text.split(",") if part)


def parse_args(argv: list[str] | None) -> tuple[tuple[int, ...], Settings]:
    parser = argparse.ArgumentParser(description="Benchmark our index against a waitress ceiling, "
                                     "nginx and pypiserver (see bench/README.md).")
    parser.add_argument("--corpus", type=_csv(int), default=(2000, 20000), help="project counts")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2,
                        help="wrk runs per scenario and server (the best counts)")
    parser.add_argument("--connections", type=_csv(int), default=(16, 64))
    parser.add_argument("--only", type=_csv(str), default=report.SERVERS,
                        help=f"comma-separated subset of {','.join(report.SERVERS)}")
    parser.add_argument("--runs", type=int, default=5, help="pip/uv runs per server (median)")
    parser.add_argument("--workdir", type=Path, default=WORKDIR)
    parser.add_argument("--start-timeout", type=float, default=600.0,
                        help="longest wait for a server's first answer (a cold start included)")
    parser.add_argument("--processes", type=int, default=None,
                        help="ours' [server] processes (default: unset, the shipped default of one "
                             "per core; `ours-1` always runs one; the ceiling stays one process)")
    parser.add_argument("--fresh-state", action="store_true",
                        help="delete ours' hash cache from earlier runs too, to measure a cold start")
    parser.add_argument("--access-log", choices=("on", "off"), default="on",
                        help="ours' [server] access_log (its lines go to ours' log file)")
    args = parser.parse_args(argv)
    unknown = set(args.only) - set(report.SERVERS)
    if unknown:
        parser.error(f"unknown server(s) in --only: {', '.join(sorted(unknown))}")
    return args.corpus, Settings(args.duration, args.connections, args.only, args.runs, args.rounds,
                                 args.workdir, args.start_timeout, args.fresh_state, args.processes,
                                 args.access_log == "on")


def _each_corpus(projects: tuple[int, ...], settings: Settings) -> Iterator[tuple[int, dict[str, Any]]]:
    for count in projects:
        yield count, bench_corpus(count, settings)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress while it runs
    # SIGTERM, and SIGINT even when started in the background, unwind through every `finally`
    # so that each server is stopped by PID.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    projects, settings = parse_args(argv)
    empty_trash(settings.workdir)
    started = time.monotonic()
    all_results: dict[str, Any] = {"settings": {**settings.__dict__, "workdir": str(settings.workdir)},
                                   "corpora": {}}
    summaries: list[str] = []
    failed = False
    for count, results in _each_corpus(projects, settings):
        all_results["corpora"][str(count)] = results
        found = report.targets(results, count, settings.connections)
        found += auth_load.targets(results, settings.connections)
        failed |= not all(t.passed for t in found)
        log_state = "on" if settings.access_log else "off"
        procs = settings.processes or f"default ({default_processes()})"
        summaries.append(f"\n== {count} projects x 10 files (ours: {procs} process(es), "
                         f"access log {log_state})\n"
                         f"{report.table(results, settings.connections)}\n\n{report.format_targets(found)}")
    if len(all_results["corpora"]) > 1:
        summaries.append("\n== growth\n" + report.growth(all_results["corpora"]))
    all_results["seconds"] = time.monotonic() - started
    OUT.mkdir(exist_ok=True)
    out = OUT / f"results-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(all_results, indent=2, default=str))
    print("\n".join(summaries))
    print(f"\nwhole run: {all_results['seconds']:.0f} s; results in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
