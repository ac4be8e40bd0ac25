"""`pypi-insiders watch`: fetch every watched repository, then wait `[fetch] interval` or a wake-up.

What `watcher start` runs where no system timer does (a pip install on a laptop). The loop has
one waiting point, `Wake.wait`: it returns when the interval is over or when any thread called
`Wake.now` (a stop, or a producer such as a queue of push notifications), so a new reason to
fetch is a new caller of `Wake.now`, not a change to the loop. The config is read again before
every run, so `repos add` takes effect at the next run without a restart; a broken file keeps
the previous one, as a reload of the index does.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from pypi_insiders import config as config_module
from pypi_insiders import fetch_queue, sd
from pypi_insiders.config import Config
from pypi_insiders.errors import ConfigError, InsidersError, LockedError
from pypi_insiders.files import LockBusy, exclusive_lock
from pypi_insiders.service.queue_watch import QUEUED, QueueWatch
from pypi_insiders.state_layout import StateLayout
from pypi_insiders.wording import counted

log = logging.getLogger(__name__)

STOP = "stop"


class Wake:
    """Why the next run starts now. Any thread may call `now`; the loop alone calls `wait`."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._reasons: list[str] = []

    def now(self, reason: str) -> None:
        """Ask for a run at once (`STOP` ends the loop instead); reasons pile up until taken."""
        with self._lock:
            self._reasons.append(reason)
            self._event.set()

    def wait(self, timeout: float) -> list[str]:
        """The reasons given since the last call; empty when `timeout` seconds passed without any."""
        self._event.wait(timeout)
        with self._lock:
            reasons, self._reasons = self._reasons, []
            self._event.clear()
        return reasons


# A run: the config, and why it runs ("start", "interval" or what callers of `Wake.now` said), so
# that a run woken for one repository may fetch only that one.
Fetch = Callable[[Config, list[str]], int]


def fetch_all(config: Config, reasons: list[str]) -> int:
    """One run over every repository, what the system timer's `fetch` does; woken only by the
    queue (a webhook), only the queued ones, what the path unit's run does."""
    from pypi_insiders.fetch import runner  # noqa: PLC0415 - the loop itself needs no dulwich

    if reasons and all(reason == QUEUED for reason in reasons):
        return runner.run_queued(config, "woken by a webhook")
    return runner.cli_update(config, [], force=False)


class Watcher:
    """The loop: run, wait, read the config again, until a STOP arrives."""

    def __init__(self, config_arg: str | None, config: Config, *, wake: Wake | None = None,
                 fetch: Fetch = fetch_all) -> None:
        self.config_arg, self.config = config_arg, config
        self.wake = wake or Wake()
        self.fetch = fetch
        self.fetching = False

    def run(self) -> int:
        """Hold the watcher lock (one watcher per state directory) and loop; 0 after a stop."""
        lock = StateLayout(self.config.paths.state).watch_lock
        lock.parent.mkdir(parents=True, exist_ok=True)
        try:
            with exclusive_lock(lock, wait=False):
                sd.ready(f"fetching every {describe(self.config.fetch.interval)}")
                log.info("watching %s, fetching every %s",
                         counted(len(self.config.repos), "repository", "repositories"),
                         describe(self.config.fetch.interval))
                self.loop()
        except LockBusy:
            msg = f"another watcher is running (it holds {lock}); stop it first"
            raise LockedError(msg) from None
        return 0

    def loop(self) -> None:
        reasons = ["start"]
        while STOP not in reasons:
            self.run_once(reasons)
            reasons = self.wake.wait(self.config.fetch.interval) or ["interval"]
            if STOP not in reasons:
                self.reread()

    def run_once(self, reasons: list[str]) -> None:
        started = time.monotonic()
        log.info("fetch run (%s)", ", ".join(reasons))
        self.fetching = True
        try:
            self.fetch(self.config, reasons)
        except LockedError as error:
            log.info("skipping this run: %s", error)
        except InsidersError as error:
            log.error("fetch run failed: %s", error)
        finally:
            self.fetching = False
        sd.status(f"last run took {time.monotonic() - started:.0f} s; next in "
                  f"{describe(self.config.fetch.interval)}")

    def reread(self) -> None:
        try:
            self.config = config_module.load(self.config_arg)
        except ConfigError as error:
            log.error("keeping the previous configuration: %s", error)

    def install_signals(self) -> None:
        """SIGTERM/SIGINT: a waiting loop stops at once; a run in progress is cut short (its
        build directory is cleared by the next run, a half-fetched mirror repaired by it)."""
        def stop(signum: int, _frame: FrameType | None) -> None:
            log.info("%s received, stopping", signal.Signals(signum).name)
            self.wake.now(STOP)
            if self.fetching:
                raise SystemExit(0)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)


def describe(seconds: float) -> str:
    """"1 hour", "15 minutes", "90 s": how `interval` reads in the log."""
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size and seconds % size == 0:
            return counted(int(seconds // size), unit)
    return f"{seconds:g} s"


def watch(config_arg: str | None, config: Config) -> int:
    """The loop, woken also by the fetch queue (local mode's pypi-insiders-fetch.path)."""
    watcher = Watcher(config_arg, config)
    watcher.install_signals()
    queue = QueueWatch(fetch_queue.queue_dir(config.paths.state), watcher.wake.now)
    queue.start()
    try:
        return watcher.run()
    finally:
        queue.stop()
