"""The parent's thread that keeps the `/status` snapshot current, so that no request computes it.

Computing the report asks upstream (for `public_projects`) and systemd (the timer's next run):
neither belongs in a waitress thread. This thread does it instead, and writes the snapshot
(`status_report`) that every serving process reads. It looks every second whether anything
the report is read from changed (a few stats, `fetch.status.input_stamp`: `repos add`, a
fetch run) and then writes a new one; every 15 seconds it writes one anyway, for the timer's
next run (one `systemctl show`) and upstream's releases (cached on disk for five minutes).

With `fallback = "mirror"` the snapshot also holds the mirror's section (`MirrorWatch`): its
counters are read at every look (a few hundred bytes that every serving process adds to), and a
change alone rewrites the snapshot, with the rest of the report as it was.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from pypi_insiders.config import Config
from pypi_insiders.fetch import status as fetch_status
from pypi_insiders.mirror import mirror
from pypi_insiders.status_report import MirrorStatus, StatusReport, snapshot_path, write_snapshot

log = logging.getLogger(__name__)

POLL = 1.0  # seconds between looks at the inputs
MAX_AGE = 15.0  # seconds after which the snapshot is written again though nothing changed
SCAN_SHARE = 0.1  # the mirror's disk scan takes at most this share of the time while files come
IDLE_SHARE = 0.01  # and at most this share while none do


class MirrorWatch:
    """The mirror's section, its disk scanned seldom: every kept file is stat'ed (0.4 s for
    20,000 files here). A scan runs when files may have come (the misses changed; and once
    more at the next look), at most SCAN_SHARE of the time; else after MAX_AGE (eviction and
    `mirror sweep` change the disk too), at most IDLE_SHARE of the time: a large idle mirror
    is scanned less often than every MAX_AGE."""

    def __init__(self, max_age: float = MAX_AGE) -> None:
        self.max_age = max_age
        self._usage: tuple[Path, mirror.Usage, float, float] | None = None  # cache, usage, when, took
        self._misses = -1
        self._settle = False
        self._failure = ""

    def section(self, config: Config) -> MirrorStatus | None:
        """None unless `fallback = "mirror"`, or while the mirror cannot be read (said once)."""
        if config.upstream.fallback != "mirror":
            self._usage = None
            return None
        cache = config.paths.cache
        try:
            counted = mirror.counts(cache)
            usage = self._scanned(config, counted.misses)
        except OSError as error:
            if str(error) != self._failure:
                log.warning("cannot read the mirror for /status: %s", error)
            self._failure = str(error)
            return None
        self._failure = ""
        return mirror.status(config.upstream, usage, counted)

    def _scanned(self, config: Config, misses: int) -> mirror.Usage:
        now = time.monotonic()
        last = self._usage
        if last is not None and last[0] == config.paths.cache:
            busy = misses != self._misses or self._settle
            wait = last[3] / SCAN_SHARE if busy else max(self.max_age, last[3] / IDLE_SHARE)
            if now - last[2] < wait:
                return last[1]
        usage = mirror.scan(config.paths.cache, config.upstream)
        self._usage = (config.paths.cache, usage, now, time.monotonic() - now)
        # A miss is counted just before its file is published (and maybe others evicted): the
        # scan for it runs once more at the next look, when the disk has settled.
        self._settle = last is not None and misses != self._misses
        self._misses = misses
        return usage


def keep_fresh(current: Callable[[], Config], stopped: threading.Event, *,
               poll: float = POLL, max_age: float = MAX_AGE) -> None:
    """Until `stopped`: a snapshot at once (from what is cached), then whenever its inputs change."""
    watch = MirrorWatch(max_age)
    last: tuple[Config, fetch_status.Stamp] | None = None
    report: StatusReport | None = None
    shown: MirrorStatus | None = None
    written = time.monotonic()
    failure = ""
    while True:
        config = current()
        try:
            stamp = fetch_status.input_stamp(config)
            section = watch.section(config)
            path = snapshot_path(config.paths.cache)
            if last is None:  # the first snapshot without waiting for upstream
                cached = fetch_status.collect(config, ask_upstream=False)
                write_snapshot(path, replace(cached, mirror=section))
            changed = report is None or last != (config, stamp) or time.monotonic() - written >= max_age
            if changed:
                report = fetch_status.collect(config)
                last, written = (config, stamp), time.monotonic()
            if report is not None and (changed or section != shown):  # the counters alone: no collect
                write_snapshot(path, replace(report, mirror=section))
                shown = section
            failure = ""
        except Exception as error:  # noqa: BLE001 - the thread must outlive any one bad read
            if str(error) != failure:  # once per cause, not every second
                log.warning("cannot refresh the status snapshot: %s", error)
            failure = str(error)
        if stopped.wait(poll):
            return
