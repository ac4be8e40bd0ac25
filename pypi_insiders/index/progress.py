"""The first generation in progress: a small file every serving process can see.

A fresh instance serves before its first generation is over (a cold start over a large store
takes minutes). While this file exists, a local project whose page is not written yet is
answered `503` with `Retry-After` instead of `404`, and `/status` shows how far the
generation is. The parent writes it before it starts serving and removes it when the first
generation is done; it lives in the cache directory (derived, never served by a web server
in front) and holds JSON: when it started, the local projects, what is done.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pypi_insiders.files import atomic_write

RETRY_AFTER = 5  # seconds, what a client is told to wait for a page not generated yet


@dataclass(frozen=True)
class Progress:
    started: float  # time.time()
    projects: int  # local projects in the store when it started (all pinned before serving)
    done: int  # files read and pages written so far (the generator's progress counter)

    def as_status(self) -> dict[str, Any]:
        return {**asdict(self), "running_s": round(time.time() - self.started, 1)}


def write(path: Path, progress: Progress) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(asdict(progress)).encode(), durable=False)


def generating(path: str) -> bool:
    """Whether a first generation is running: one stat, for the request path's misses only."""
    return os.path.exists(path)  # noqa: PTH110 - a str path on the hot path


def read(path: Path) -> Progress | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Progress(float(data["started"]), int(data["projects"]), int(data["done"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_str(path: str) -> Progress | None:
    return read(Path(path))


def clear(path: Path) -> None:
    path.unlink(missing_ok=True)
