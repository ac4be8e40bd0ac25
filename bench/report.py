"""The results table (each figure of ours as a ratio to the others), the Targets of issues 2 and
10, and how the figures grow from one corpus to the next."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# ours: the shipped default of `[server] processes` (or --processes); ours-1: one process
SERVERS = ("ours", "ours-1", "ceiling", "nginx", "pypiserver")
SCENARIOS = ("project", "root", "rotation", "project-gzip", "root-gzip")
Results = Mapping[str, Mapping[str, Any]]  # server name -> figures (see run.bench_server)


@dataclass(frozen=True)
class Target:
    name: str
    passed: bool
    detail: str


def _load(results: Results, server: str, scenario: str, connections: int) -> Mapping[str, Any] | None:
    for row in results.get(server, {}).get("load", []):
        if row["scenario"] == scenario and row["connections"] == connections:
            return dict(row)
    return None


def _figure(results: Results, server: str, key: str) -> float | None:
    """`rps:project:16`-style keys reach into the load rows; anything else is a plain figure."""
    if key.count(":") == 2:
        field, scenario, connections = key.split(":")
        row = _load(results, server, scenario, int(connections))
        return None if row is None else float(row[field])
    value = results.get(server, {}).get(key)
    return None if value is None else float(value)


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _ratio(ours: float | None, other: float | None) -> str:
    if ours is None or other is None or other == 0:
        return "-"
    return f"{ours / other:.2f}"


def rows(results: Results, connections: tuple[int, ...]) -> list[tuple[str, str]]:
    """(label, figure key) for every row of the table, in display order."""
    out: list[tuple[str, str]] = []
    for scenario in SCENARIOS:
        for conns in connections:
            out += [(f"{scenario} c{conns} rps", f"rps:{scenario}:{conns}"),
                    (f"{scenario} c{conns} p50 ms", f"p50_ms:{scenario}:{conns}"),
                    (f"{scenario} c{conns} p99 ms", f"p99_ms:{scenario}:{conns}"),
                    (f"{scenario} c{conns} errors", f"errors:{scenario}:{conns}")]
    out += [("start s (ours warm)", "start_s"), ("start s cold", "start_cold_s"),
            ("start s cold, first answer", "start_cold_answer_s"),
            ("start s cache, no index", "start_rebuild_s"),
            ("start s cache, no index, first answer", "start_rebuild_answer_s"),
            ("new file visible s", "fresh_s"), ("pip download s", "pip_s"), ("uv pip install s", "uv_s"),
            ("WAL MB after the first start", "wal_mb"), ("store MB", "store_mb"),
            ("RSS MB after load (sum)", "rss_mb"), ("PSS MB after load (sum)", "pss_mb")]
    return out


def table(results: Results, connections: tuple[int, ...]) -> str:
    header = ["figure", *SERVERS, "ours/ours-1", "ours/ceil", "ours/nginx", "ours/pypisrv"]
    lines = [header]
    for label, key in rows(results, connections):
        values = {server: _figure(results, server, key) for server in SERVERS}
        if all(v is None for v in values.values()):
            continue
        lines.append([label, *(_cell(values[s]) for s in SERVERS),
                      *(_ratio(values["ours"], values[s]) for s in SERVERS[1:])])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(line, widths, strict=True)))
                     for line in lines)


def _nginx_share_targets(results: Results, connections: tuple[int, ...]) -> list[Target]:
    """Issue 10, target 1: the default configuration at 12% of nginx or more on one project page."""
    found: list[Target] = []
    for conns in connections:
        ours, nginx = _load(results, "ours", "project", conns), _load(results, "nginx", "project", conns)
        if ours is not None and nginx is not None and nginx["rps"]:
            share = ours["rps"] / nginx["rps"]
            found.append(Target(f"project c{conns} >= 12% of nginx rps", share >= 0.12,
                                f"{share:.1%} ({ours['rps']:.0f} / {nginx['rps']:.0f})"))
    return found


def _throughput_targets(results: Results, connections: tuple[int, ...]) -> list[Target]:
    targets: list[Target] = _nginx_share_targets(results, connections)
    for scenario in ("project", "root", "root-gzip"):
        for conns in connections:
            ours = _load(results, "ours", scenario, conns)
            ceiling = _load(results, "ceiling", scenario, conns)
            if ours is None or ceiling is None:
                continue
            ratio = ours["rps"] / ceiling["rps"] if ceiling["rps"] else 0.0
            targets.append(Target(f"{scenario} c{conns} >= 70% of ceiling rps, no errors",
                                  ratio >= 0.7 and ours["errors"] == 0,
                                  f"{ratio:.0%} ({ours['rps']:.0f} / {ceiling['rps']:.0f}), "
                                  f"{ours['errors']} errors"))
            if conns == 16:
                targets.append(Target(f"{scenario} c16 p99 < 50 ms", ours["p99_ms"] < 50,
                                      f"p99 {ours['p99_ms']:.1f} ms"))
    return targets


def targets(results: Results, projects: int, connections: tuple[int, ...]) -> list[Target]:
    """Every Target of issue 2 that this corpus and this selection of servers can decide."""
    found = _throughput_targets(results, connections)
    for tool in ("pip", "uv"):
        ours, nginx = _figure(results, "ours", f"{tool}_s"), _figure(results, "nginx", f"{tool}_s")
        if "ours" in results and "nginx" in results:
            ok = ours is not None and nginx is not None and ours <= 1.2 * nginx
            found.append(Target(f"{tool} within 1.2x of nginx", ok, f"{_cell(ours)} s vs {_cell(nginx)} s"))
    if "ours" in results:
        fresh, start = _figure(results, "ours", "fresh_s"), _figure(results, "ours", "start_s")
        found.append(Target("new file visible < 1 s", fresh is not None and fresh < 1.0, f"{_cell(fresh)} s"))
        found.append(Target("start to first answer < 5 s (warm)", start is not None and start < 5.0,
                            f"{_cell(start)} s"))
        found += _start_targets(results, projects)
        pss, rss = _figure(results, "ours", "pss_mb"), _figure(results, "ours", "rss_mb")
        found.append(Target("memory after load < 100 MB, all processes (PSS)", pss is not None and pss < 100,
                            f"PSS {_cell(pss)} MB, RSS summed {_cell(rss)} MB"))
    return found


def _start_targets(results: Results, projects: int) -> list[Target]:
    """Issue 10, target 2: a fresh instance answers within 2 s; 20,000 projects cold in < 40 s."""
    found = []
    for key in ("start_cold_answer_s", "start_rebuild_answer_s"):
        first = _figure(results, "ours", key)
        if first is not None or key in results.get("ours", {}):
            found.append(Target(f"fresh instance answers < 2 s ({key})", first is not None and first < 2,
                                f"{_cell(first)} s"))
    wal, store = _figure(results, "ours", "wal_mb"), _figure(results, "ours", "store_mb")
    if wal is not None and store:
        found.append(Target("sqlite WAL < a tenth of the store", wal < store / 10, f"{_cell(wal)} of "
                            f"{_cell(store)} MB"))
    cold = _figure(results, "ours", "start_cold_s")
    if projects >= 20000 and "start_cold_s" in results.get("ours", {}):
        found.append(Target("cold generation of 20,000 projects < 40 s", cold is not None and cold < 40,
                            f"{_cell(cold)} s"))
    return found


GROWTH_ROWS = (("files", "files"), ("start s, warm", "start_s"), ("start s, cold", "start_cold_s"),
               ("start s, cold, first answer", "start_cold_answer_s"),
               ("start s, cache but no index", "start_rebuild_s"),
               ("start s, cache but no index, first answer", "start_rebuild_answer_s"),
               ("new file visible s", "fresh_s"),
               ("WAL MB after the first start", "wal_mb"), ("PSS MB after load", "pss_mb"),
               ("RSS MB after load", "rss_mb"),
               ("root c16 p99 ms", "p99_ms:root:16"), ("root-gzip c16 p99 ms", "p99_ms:root-gzip:16"),
               ("project c16 rps", "rps:project:16"))


def growth(corpora: Mapping[str, Results]) -> str:
    """Ours' figures per corpus and each one's growth over the smallest, beside the files' growth."""
    sizes = sorted(corpora, key=int)
    first = sizes[0]
    lines = [["figure (ours)", *sizes, *(f"x {size}/{first}" for size in sizes[1:])]]
    for label, key in GROWTH_ROWS:
        values = [int(size) * 10 if key == "files" else _figure(corpora[size], "ours", key) for size in sizes]
        lines.append([label, *(_cell(v) for v in values), *(_ratio(v, values[0]) for v in values[1:])])
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(line, widths, strict=True)))
                     for line in lines)


def format_targets(found: list[Target]) -> str:
    return "\n".join(f"{'PASS' if t.passed else 'FAIL'}  {t.name}: {t.detail}" for t in found)
