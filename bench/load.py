"""HTTP load with wrk: requests per second and latency percentiles for a list of paths.

One Lua script (`paths.lua`) serves every scenario: a single path is a list of one, so the
single-page, root-list and rotation figures are measured the same way and differ only in
what is asked. Requests are formatted once per thread in `init`, so the client's own Lua
cost stays well below what even nginx can answer.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("paths.lua")
_MARK = "WRK_JSON "


@dataclass(frozen=True)
class LoadResult:
    """One wrk run. Latencies in milliseconds; `errors` counts sockets errors and 4xx/5xx."""

    scenario: str
    connections: int
    requests: int
    seconds: float
    bytes_per_request: float  # what wrk read, headers included: tells gzip from identity apart
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    timeouts: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def run_wrk(base_url: str, scenario: str, paths: Sequence[str], connections: int, duration: float,
            *, threads: int = 2, timeout: float = 10.0, env: Mapping[str, str] | None = None,
            encoding: str = "") -> LoadResult:
    """wrk against `base_url` cycling over `paths`; raises RuntimeError when wrk itself fails.

    `env`: added to wrk's environment (WRK_AUTHORIZATION: an Authorization header for every request).
    `encoding`: the Accept-Encoding every request sends (none when empty), e.g. "gzip".
    """
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        paths_file = Path(tmp) / "paths.txt"
        paths_file.write_text("".join(f"{path}\n" for path in paths))
        argv = ["wrk", f"-t{min(threads, connections)}", f"-c{connections}", f"-d{duration:g}s",
                f"--timeout={timeout:g}s", "--latency", "-s", str(SCRIPT), base_url, "--", str(paths_file),
                encoding]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + timeout + 60,
                              check=False, env={**os.environ, **env} if env else None)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith(_MARK)), None)
    if done.returncode != 0 or line is None:
        msg = f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
        raise RuntimeError(msg)
    data = json.loads(line[len(_MARK):])
    seconds = data["duration_us"] / 1e6
    errors = sum(data[key] for key in ("connect", "read", "write", "status", "timeout"))
    return LoadResult(
        scenario=scenario, connections=connections, requests=data["requests"], seconds=seconds,
        bytes_per_request=data["bytes"] / data["requests"] if data["requests"] else 0.0,
        rps=data["requests"] / seconds if seconds else 0.0,
        p50_ms=data["p50_us"] / 1000, p99_ms=data["p99_us"] / 1000,
        errors=errors, timeouts=data["timeout"],
    )
