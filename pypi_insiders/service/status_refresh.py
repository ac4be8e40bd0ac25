"""The parent's thread that keeps the `/status` snapshot current, so that no request computes it.

Computing the report asks upstream (for `public_projects`) and systemd (the timer's next run):
neither belongs in a waitress thread. This thread does it instead, and writes the snapshot
(`status_report`) that every serving process reads. It looks every second whether anything
the report is read from changed (a few stats, `fetch.status.input_stamp`: `repos add`, a
fetch run) and then writes a new one; every 15 seconds it writes one anyway, for the timer's
next run (one `systemctl show`) and upstream's releases (cached on disk for five minutes).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from pypi_insiders.config import Config
from pypi_insiders.fetch import status as fetch_status

log = logging.getLogger(__name__)

POLL = 1.0  # seconds between looks at the inputs
MAX_AGE = 15.0  # seconds after which the snapshot is written again though nothing changed


def keep_fresh(current: Callable[[], Config], stopped: threading.Event, *,
               poll: float = POLL, max_age: float = MAX_AGE) -> None:
    """Until `stopped`: a snapshot at once (from what is cached), then whenever its inputs change."""
    last: tuple[Config, fetch_status.Stamp] | None = None
    written = time.monotonic()
    failure = ""
    while True:
        config = current()
        try:
            stamp = fetch_status.input_stamp(config)
            if last is None:  # the first snapshot without waiting for upstream
                fetch_status.refresh(config, ask_upstream=False)
            if last != (config, stamp) or time.monotonic() - written >= max_age:
                fetch_status.refresh(config)
                last, written = (config, stamp), time.monotonic()
            failure = ""
        except Exception as error:  # noqa: BLE001 - the thread must outlive any one bad read
            if str(error) != failure:  # once per cause, not every second
                log.warning("cannot refresh the status snapshot: %s", error)
            failure = str(error)
        if stopped.wait(poll):
            return
