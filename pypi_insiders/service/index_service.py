"""The parent process of `serve`: generate the index, keep it current, serve it, obey systemd.

Order matters for systemd: `READY=1` is sent only once the first generation is on disk and
the socket is bound, so a unit ordered after ours never sees an empty index. SIGTERM and
SIGINT stop cleanly (exit 0); SIGHUP re-reads the same config file and applies what can
change live (upstream, fallback, yanking, upload, access), keeping the old config when the
new one is broken. The threads and what each touches are listed in `service/__init__.py`.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from pypi_insiders import directories, sd
from pypi_insiders.config import Config
from pypi_insiders.errors import AddressInUseError, ConfigError
from pypi_insiders.index import progress
from pypi_insiders.index.layout import IndexLayout
from pypi_insiders.service import live_config, mirror_sweep, processes, status_refresh
from pypi_insiders.service.server import Server, answers, create_server, listening, url_of
from pypi_insiders.service.serving import Serving, install_signals, reloader, thread
from pypi_insiders.service.worker import serve_worker
from pypi_insiders.state_layout import CacheLayout
from pypi_insiders.wording import counted

log = logging.getLogger(__name__)

_HEARTBEAT = 10.0  # seconds between checks for progress of the first generation
_START_EXTENSION = 60.0  # each sign of progress buys this much more start-up time
_SCAN_GRACE = 5.0  # seconds a stop waits for a first generation still running
_PROGRESS_EVERY = 1.0  # seconds between updates of the first generation's progress file


class IndexGenerator(Protocol):
    """`index.generate.Generator`, imported late so that `serve --help` stays light."""

    def generate_all(self) -> None: ...

    def update_paths(self, relpaths: Iterable[str]) -> None: ...

    def progress(self) -> int: ...

    def pin_store(self) -> int: ...

    def reconfigure(self, config: Config) -> None: ...

    def refresh_yanks(self) -> None: ...

    def close(self) -> None: ...


class StoreWatcher(Protocol):
    """`index.store_watcher.Watcher`: only the parent imports watchdog."""

    def start(self) -> None: ...

    def stop(self, timeout: float = 10.0) -> None: ...

    def reconfigure(self, config: Config) -> None: ...

    def is_alive(self) -> bool: ...


class Service(Serving):
    """The parent: the generator, the watcher and the workers, and what systemd is told."""

    announce = True

    def __init__(self, config: Config, config_arg: str | None, generator: IndexGenerator, *,
                 file_config: Config | None = None) -> None:
        super().__init__(config, config_arg, file_config=file_config)
        self.generator = generator
        self.watcher: StoreWatcher | None = None
        self.workers = processes.Workers([])
        self.ready = threading.Event()  # READY=1 sent: the start-up is over
        self.scanning = False  # the first generation is still running (it runs while serving)
        self._progress_lock = threading.Lock()  # the progress file is never written after its removal
        self._generated = False
        self._scan: threading.Thread | None = None
        # A stop and the first scan's start of the watcher take turns: a watcher started after
        # the stop looked for one would run on, on a generator the stop then closes.
        self._watcher_lock = threading.Lock()
        self.failed = False

    def start(self) -> str:
        """Pin, bind (and fork), then generate while serving; returns the URL we answer on.

        Every local name is pinned first, so nothing local falls through upstream; until the
        first generation is over, a local project without its page yet gets 503 + Retry-After
        (`index.progress`), and an index left by an earlier run is served as it is. READY=1
        waits for that generation, and only then does the watcher start.
        """
        self.scanning = True
        projects = self.generator.pin_store()
        self.write_progress(progress.Progress(time.time(), projects, 0))
        server = self._bind()
        url = url_of(*listening(server)[0])
        if IndexLayout(self.config.paths.index).root_list("html").exists():
            log.info("serving the index left by the last run while the store is scanned")
        else:
            log.info("serving while the index is generated: %d local projects, each answered 503 "
                     "until its page is written", projects)
        self._scan = threading.Thread(target=self._first_scan, args=(url,), daemon=True, name="first-scan")
        self._scan.start()
        thread(report_progress, self, projects)
        thread(status_refresh.keep_fresh, lambda: self.config, self.stopped)  # after the fork
        thread(mirror_sweep.keep_swept, lambda: self.config, self.stopped)
        return url

    @property
    def progress_file(self) -> Path:
        return CacheLayout(self.config.paths.cache).first_generation

    def write_progress(self, state: progress.Progress) -> None:
        with self._progress_lock:
            if not self._generated:
                progress.write(self.progress_file, state)

    def _end_progress(self) -> None:
        with self._progress_lock:
            self._generated = True
            progress.clear(self.progress_file)

    def _generate(self) -> None:
        sd.status("generating the index")
        began = time.monotonic()
        self.generator.generate_all()
        log.info("index generated in %.2f s", time.monotonic() - began)

    def _bind(self) -> Server:
        extra = self.config.server.processes - 1
        try:
            sock = processes.bind(self.config) if extra else None
            if sock is not None:
                config, config_arg, file_config = self.config, self.config_arg, self.file_config
                self.workers = processes.Workers(processes.fork(
                    extra, lambda: serve_worker(config, config_arg, file_config, sock)))
            self.server = create_server(self.app, self.config, sock)
        except OSError as error:
            where = f"{self.config.server.host}:{self.config.server.port}"
            msg = f"server.listen: cannot listen on {where}: {error.strerror or error}"
            if error.errno == errno.EADDRINUSE:
                msg += f" (`ss -ltnp 'sport = {self.config.server.port}'` shows who holds it)"
                raise AddressInUseError(msg) from None
            if error.errno == errno.EADDRNOTAVAIL:  # at boot, before the network has the address
                msg += " (not an address of this host, yet)"
                raise AddressInUseError(msg) from None
            raise ConfigError(msg) from None
        return self.server

    def _watch(self) -> None:
        from pypi_insiders.index import store_watcher  # noqa: PLC0415 - only the watching process needs watchdog

        with self._watcher_lock:
            if self.stopped.is_set():
                return
            self.watcher = store_watcher.Watcher(self.config, self.generator)
            self.watcher.start()

    def _first_scan(self, url: str) -> None:
        """The warm start's first generation; a failure stops the service with status 1."""
        try:
            self._generate()
            self._end_progress()
            gc.collect()
            processes.trim_heap()  # a cold generation's garbage: the parent serves on for months
            if not self.stopped.is_set():
                self._watch()
                self.ready.set()
                sd.ready(f"serving {url}")
        except Exception:
            log.exception("the first scan of the store failed; stopping")
            self.failed = True
            os.kill(os.getpid(), signal.SIGTERM)
        finally:
            self.scanning = False

    def healthy(self) -> bool:
        """Worth a watchdog ping: the watcher and every worker run, and the server answers."""
        if self.watcher is not None and not self.watcher.is_alive():
            return False
        if not self.workers.alive():
            return False
        return self.server is not None and answers(self.server)

    def reload(self) -> None:
        sd.reloading()
        self.workers.signal(signal.SIGHUP)
        new = self.apply_new_config()
        if new is None:
            sd.ready("serving (reload failed: config is broken)")
            return
        self.generator.reconfigure(new)
        if self.watcher is not None:
            self.watcher.reconfigure(new)
        log.info("configuration reloaded: upstream %s, fallback %s, upload %s, anonymous %s (%s)",
                 live_config.public(new.upstream.url), new.upstream.fallback,
                 "enabled" if new.upload.enabled else "disabled", new.access.anonymous, new.access.reason)
        sd.ready("serving (configuration reloaded)")

    def stop_parts(self) -> None:
        sd.stopping()
        with self._watcher_lock:  # `stopped` is set: no watcher starts after this
            watcher = self.watcher
        if watcher is not None:
            watcher.stop()
        self.workers.stop()

    def closed(self) -> None:
        """A first generation about to finish gets a moment (a daemon thread still in sqlite at
        interpreter exit can crash it); a long one must not delay the stop."""
        if self._scan is not None:
            self._scan.join(timeout=_SCAN_GRACE)
        if not self.scanning:
            self.generator.close()


def start_heartbeat(service: Service, interval: float = _HEARTBEAT) -> None:
    """Until READY=1, ask systemd for more time whenever the first generation has made headway.

    A cold start over a large store can outlast TimeoutStartSec=; killed then, the service would
    restart into the same work. EXTEND_TIMEOUT_USEC only counts once TimeoutStartSec= has passed,
    and stops coming when progress stops, so a start that hangs still fails.
    """
    last = service.generator.progress()
    while not service.ready.wait(interval) and not service.stopped.is_set():
        now = service.generator.progress()
        if now != last:
            sd.notify(EXTEND_TIMEOUT_USEC=int(_START_EXTENSION * 1_000_000),
                      STATUS=f"generating the index: {now} files and pages done so far")
            last = now


def report_progress(service: Service, projects: int, interval: float = _PROGRESS_EVERY) -> None:
    """Until the first generation is over, its progress into the file `/status` shows."""
    started = time.time()
    while not service.ready.wait(interval) and service.scanning and not service.stopped.is_set():
        with contextlib.suppress(OSError):
            service.write_progress(progress.Progress(started, projects, service.generator.progress()))


def _watchdog(service: Service, interval: float) -> None:
    while not service.stopped.wait(interval):
        if service.healthy():
            sd.watchdog_ping()
        else:
            log.warning("watchdog: not healthy, skipping the ping")


def _announce(config: Config, url: str) -> None:
    upstream, access = config.upstream, config.access
    log.info("serving %s at %s; store %s; upstream %s (%s), fallback %s; %s x %s",
             config.paths.index, url, config.paths.store, live_config.public(upstream.url),
             upstream.url_source, upstream.fallback, counted(config.server.processes, "process", "processes"),
             counted(config.server.threads, "thread"))
    log.info("anonymous callers: %s (%s); public projects: %s", access.anonymous, access.reason,
             ", ".join(sorted(access.public_projects)) or "none")
    for line in upstream.skipped:
        log.warning("upstream: %s", line)


def serve(config: Config, config_arg: str | None) -> int:
    from pypi_insiders.index import generate  # noqa: PLC0415 - keeps `serve --help` and worker start-up light

    directories.prepare(config, create=True)
    lock = directories.InstanceLock().acquire(config)
    # waitress warns on every request queued behind busy threads: per-request noise under load.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    service = Service(config, config_arg, generate.Generator.from_config(config))
    live_config.record_running(service.file_config, config.paths.state)
    install_signals(service)
    thread(start_heartbeat, service)
    try:
        url = service.start()
        _announce(config, url)
        thread(reloader, service)
        interval = sd.watchdog_interval()
        if interval:
            thread(_watchdog, service, interval)
        if not service.scanning:
            service.ready.set()
            sd.ready(f"serving {url}")
        service.run()
    except SystemExit:  # a stop signal outside waitress's loop (which catches its own): still a clean stop
        pass
    finally:
        service.stop()
        live_config.forget_running(config.paths.state)
        lock.release()
    log.info("stopped")
    return 1 if service.failed else 0
