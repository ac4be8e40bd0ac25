"""The parent's thread that keeps the mirror's disk in bounds (`[upstream] fallback = "mirror"`).

Every five minutes, and soon after a worker asks, it runs the one sweep (`Sweeper.sweep`, the
same as `pypi-insiders mirror sweep`): eviction past `max_size`, files no page lists (unless
`keep_removed`), dead `.part` files and old free lock files. A worker asks by creating
`mirror/sweep-wanted` (a file passed through below `min_free`, a disk full mid-file, a reload
that lowers `max_size`); this thread polls for it. Requests are served meanwhile: the sweep
never deletes a file being written, and an open descriptor keeps a file being sent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Final

from pypi_insiders.config import Config
from pypi_insiders.mirror.layout import MirrorLayout
from pypi_insiders.mirror.sweep import Sweeper

log = logging.getLogger(__name__)

EVERY: Final = 300.0  # seconds between sweeps nobody asked for
POLL: Final = 1.0  # seconds between looks for a worker's request
MIN_GAP: Final = 10.0  # seconds at least between two sweeps a flood of requests asks for


def keep_swept(current: Callable[[], Config], stopped: threading.Event, *,
               every: float = EVERY, poll: float = POLL, min_gap: float = MIN_GAP) -> None:
    """Until `stopped`: a sweep every `every` seconds, or once asked, while fallback is mirror."""
    last = time.monotonic() - min_gap  # a request at once is taken at once; the first round in `every`
    failure = ""
    while not stopped.wait(poll):
        config = current()
        layout = MirrorLayout.under(config.paths.cache)
        if config.upstream.fallback != "mirror" or not layout.root.is_dir():
            continue
        since = time.monotonic() - last
        if since < every and not (since >= min_gap and _asked(layout)):
            continue
        last = time.monotonic() - min_gap  # a request at once is taken at once; the first round in `every`
        try:
            Sweeper(layout, config.upstream).sweep()
            failure = ""
        except Exception as error:  # noqa: BLE001 - the thread must outlive any one bad sweep
            if str(error) != failure:  # once per cause, not every sweep
                log.warning("mirror sweep failed: %s", error)
            failure = str(error)


def _asked(layout: MirrorLayout) -> bool:
    """Take a worker's request: removed before the sweep, so one made during it is kept."""
    try:
        layout.sweep_request.unlink()
    except FileNotFoundError:
        return False
    except OSError as error:
        log.warning("mirror sweep: cannot take the request %s: %s", layout.sweep_request, error)
        return False
    return True
