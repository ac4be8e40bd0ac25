"""How counts, sizes and times read in messages and logs: "2 projects", "1.5 GiB", "...T01:54:11Z".

One place, so that every line agrees with `status`, which shows times in UTC with their zone.
"""

from __future__ import annotations

import time


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """"1 user", "0 users", "2 repositories" (with `plural` for nouns not made with an s)."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def utc(timestamp: float) -> str:
    """A moment in UTC, zone included, as `status` shows it: 2026-12-07T01:54:11Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def size(count: int) -> str:
    """Bytes as a reader takes them in: "512 bytes", "1.5 KiB", "10.0 GiB" (powers of 1024, as
    the mirror's `max_size` and `min_free` are usually written)."""
    if count < 1024:
        return counted(count, "byte")
    value = float(count)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"
