"""The results table (each figure of ours as a ratio to the others) and the Targets of issue 2."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SERVERS = ("ours", "ceiling", "nginx", "pypiserver")
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
    for scenario in ("project", "root", "rotation"):
        for conns in connections:
            out += [(f"{scenario} c{conns} rps", f"rps:{scenario}:{conns}"),
                    (f"{scenario} c{conns} p50 ms", f"p50_ms:{scenario}:{conns}"),
                    (f"{scenario} c{conns} p99 ms", f"p99_ms:{scenario}:{conns}"),
                    (f"{scenario} c{conns} errors", f"errors:{scenario}:{conns}")]
    out += [("start s (ours warm)", "start_s"), ("start s cold", "start_cold_s"),
            ("start s cache, no index", "start_rebuild_s"),
            ("new file visible s", "fresh_s"), ("pip download s", "pip_s"), ("uv pip install s", "uv_s"),
            ("RSS MB after load", "rss_mb")]
    return out


def table(results: Results, connections: tuple[int, ...]) -> str:
    header = ["figure", *SERVERS, "ours/ceil", "ours/nginx", "ours/pypisrv"]
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


def _throughput_targets(results: Results, connections: tuple[int, ...]) -> list[Target]:
    targets: list[Target] = []
    for scenario in ("project", "root"):
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
        if projects >= 20000:
            rss = _figure(results, "ours", "rss_mb")
            found.append(Target("RSS < 100 MB", rss is not None and rss < 100, f"{_cell(rss)} MB"))
    return found


def format_targets(found: list[Target]) -> str:
    return "\n".join(f"{'PASS' if t.passed else 'FAIL'}  {t.name}: {t.detail}" for t in found)
