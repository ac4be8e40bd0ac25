"""The mirror's counters for `/status`: this process's, since it started."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class MirrorStats:
    hits: int = 0  # files served from disk
    misses: int = 0  # files fetched from upstream
    bytes_upstream: int = 0
    stale_pages: int = 0
    last_error: str = ""
    last_error_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for key, value in counts.items():
                setattr(self, key, getattr(self, key) + value)

    def error(self, text: str) -> None:
        with self._lock:
            self.last_error, self.last_error_at = text, time.time()

    def as_status(self) -> dict[str, Any]:
        with self._lock:
            return {"hits": self.hits, "misses": self.misses, "bytes_from_upstream": self.bytes_upstream,
                    "stale_pages_served": self.stale_pages,
                    "last_upstream_error": self.last_error or None,
                    "last_upstream_error_at": self.last_error_at or None}
