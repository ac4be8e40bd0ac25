"""How counts and times read in messages and logs: "1 project", "2 projects", "...T01:54:11Z".

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
