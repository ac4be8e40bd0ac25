"""What the parent and every forked worker share: the app on a server, its config, reloads, stops."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

from pypi_insiders.config import Config
from pypi_insiders.errors import ConfigError
from pypi_insiders.service import live_config
from pypi_insiders.service.server import Server
from pypi_insiders.status_report import Snapshot
from pypi_insiders.web.app import make_app

log = logging.getLogger(__name__)


class Serving:
    """One process's app and server. `file_config` is the file as read, to notice changes."""

    announce = False  # whether signals are logged: only the parent speaks for the service

    def __init__(self, config: Config, config_arg: str | None, *, file_config: Config | None = None) -> None:
        self.config = config
        self.config_arg = config_arg
        self.file_config = file_config or live_config.read_file(config_arg, config)
        self.app = make_app(config, status=Snapshot.in_cache(config.paths.cache))
        self.server: Server | None = None
        self.stopped = threading.Event()
        self.reload_requested = threading.Event()

    def reload(self) -> None:
        self.apply_new_config()

    def apply_new_config(self) -> Config | None:
        """Re-read the file into the app; None (and the old config kept) when it is broken."""
        try:
            new_file = live_config.read_file(self.config_arg, None)
        except ConfigError as error:
            log.error("reload: keeping the running configuration: %s", error)
            return None
        new = live_config.keep_overrides(self.file_config, self.config, new_file, warn=self.announce)
        self.app.reconfigure(new)
        self.config, self.file_config = new, new_file
        return new

    def run(self) -> None:
        """Serve until a signal ends waitress's loop."""
        if self.server is None:
            msg = "the server must be bound before it runs"
            raise RuntimeError(msg)
        self.server.run()

    def stop(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):  # a second signal must not cut cleanup short
            signal.signal(signum, signal.SIG_IGN)
        self.stopped.set()
        self.stop_parts()
        if self.server is not None:
            self.server.close()
        self.app.close()
        self.closed()

    def stop_parts(self) -> None:
        """What must stop before the server closes (the parent's watcher and workers)."""

    def closed(self) -> None:
        """What may go only once nothing serves any more."""


def reloader(serving: Serving) -> None:
    """Reloads run here, not in the signal handler, which may interrupt any code."""
    while not serving.stopped.is_set():
        if serving.reload_requested.wait(1.0):
            serving.reload_requested.clear()
            if not serving.stopped.is_set():
                serving.reload()


def install_signals(serving: Serving) -> None:
    def stop(signum: int, _frame: FrameType | None) -> None:
        if serving.announce:
            log.info("%s received, stopping", signal.Signals(signum).name)
        raise SystemExit(0)  # waitress's loop catches it and shuts its threads down

    def hup(_signum: int, _frame: FrameType | None) -> None:
        serving.reload_requested.set()

    signal.signal(signal.SIGTERM, stop)
    if serving.announce:  # a worker ignores SIGINT: the parent decides, and sends SIGTERM
        signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, hup)


def thread(target: Callable[..., object], *args: object) -> None:
    threading.Thread(target=target, args=args, daemon=True, name=getattr(target, "__name__", None)).start()
