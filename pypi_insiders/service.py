"""`pypi-insiders serve`: generate the index, keep it current, serve it, obey systemd and signals.

Order matters for systemd: `READY=1` is sent only once the first generation is on disk and
the socket is bound, so a unit ordered after ours never sees an empty index. SIGTERM and
SIGINT stop cleanly (exit 0); SIGHUP re-reads the same config file and applies what can
change live (upstream, fallback, yanking, upload), keeping the old config when the new one
is broken. With `[server] processes` above 1, forked workers share the socket (workers.py).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from dataclasses import replace
from types import FrameType
from typing import Any

from waitress.server import create_server as _waitress_server

from pypi_insiders import config as config_module
from pypi_insiders import directories, sd
from pypi_insiders.config import Config
from pypi_insiders.errors import ConfigError
from pypi_insiders.fetch import status as fetch_status
from pypi_insiders.http_client import display_url
from pypi_insiders.index.layout import IndexLayout
from pypi_insiders.web import workers
from pypi_insiders.web.app import IndexApp, make_app
from pypi_insiders.web.head import keep_head_connections

log = logging.getLogger(__name__)

_BODY_SLACK = 1024 * 1024  # multipart framing around the largest allowed upload
_HEARTBEAT = 10.0  # seconds between checks for progress of the first generation
_START_EXTENSION = 60.0  # each sign of progress buys this much more start-up time


def create_server(app: IndexApp, config: Config, sock: socket.socket | None = None) -> Any:  # noqa: ANN401
    """A waitress server on the configured address (port 0 picks a free one) or on `sock`."""
    where: dict[str, Any] = ({"sockets": [sock]} if sock is not None
                             else {"host": config.server.host, "port": config.server.port})
    if config.server.trusted_proxy:  # the client's address for logs and the login throttle
        where.update(trusted_proxy=config.server.trusted_proxy, trusted_proxy_count=1,
                     trusted_proxy_headers={"x-forwarded-for", "x-forwarded-proto"})
    server = _waitress_server(
        app, threads=config.server.threads, ident="pypi-insiders", asyncore_use_poll=True,
        connection_limit=1000, clear_untrusted_proxy_headers=True,
        max_request_body_size=config.upload.max_size + _BODY_SLACK, **where)
    keep_head_connections(server)
    return server


def listening(server: Any) -> list[tuple[str, int]]:  # noqa: ANN401
    """Every (host, port) actually bound; with port 0 this is where to find us."""
    if hasattr(server, "effective_listen"):
        return [(str(h), int(p)) for h, p in server.effective_listen]
    return [(str(server.effective_host), int(server.effective_port))]


def url_of(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


class Service:
    """The running pieces and the signal-driven transitions between them.

    A forked worker has a Service too, without generator or watcher, and tells systemd nothing.
    """

    def __init__(self, config: Config, config_arg: str | None, generator: Any = None,  # noqa: ANN401
                 *, file_config: Config | None = None, worker: bool = False) -> None:
        self.config = config
        self.config_arg = config_arg
        self.file_config = file_config or _reload_file(config_arg, config)
        self.generator = generator
        self.worker = worker
        self.app = make_app(config, status=fetch_status)
        self.server: Any = None
        self.watcher: Any = None
        self.workers = workers.Workers([])
        self.stopped = threading.Event()
        self.ready = threading.Event()  # READY=1 sent: the start-up is over
        self.reload_requested = threading.Event()
        self.scanning = False  # the warm start's first scan is still running
        self.failed = False

    def start(self) -> str:
        """Bind (and fork) and watch, generating first; returns the URL we answer on.

        With an index left by an earlier run (a restart), its pages are served at once while
        the first scan brings them up to date in a thread; READY=1 still waits for that scan.
        """
        self.scanning = IndexLayout(self.config.paths.index).root_list("html").exists()
        if not self.scanning:
            self._generate()
        self._bind()
        url = url_of(*listening(self.server)[0])
        if self.scanning:
            log.info("serving the index left by the last run while the store is scanned")
            _thread(self._first_scan, url)
        else:
            self._watch()
        return url

    def _generate(self) -> None:
        sd.status("generating the index")
        began = time.monotonic()
        self.generator.generate_all()
        log.info("index generated in %.2f s", time.monotonic() - began)

    def _bind(self) -> None:
        extra = self.config.server.processes - 1
        try:
            sock = workers.bind(self.config) if extra else None
            if sock is not None:
                self.workers = workers.Workers(workers.fork(extra, lambda: _serve_worker(self, sock)))
            self.server = create_server(self.app, self.config, sock)
        except OSError as error:
            where = f"{self.config.server.host}:{self.config.server.port}"
            msg = f"server.listen: cannot listen on {where}: {error.strerror or error}"
            raise ConfigError(msg) from None

    def _watch(self) -> None:
        from pypi_insiders.index import store_watcher  # noqa: PLC0415 - only the watching process needs watchdog

        self.watcher = store_watcher.Watcher(self.config, self.generator)
        self.watcher.start()

    def _first_scan(self, url: str) -> None:
        """The warm start's first generation; a failure stops the service with status 1."""
        try:
            self._generate()
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
        host, port = listening(self.server)[0]
        return _answers(host if host not in ("0.0.0.0", "::") else "127.0.0.1", port)  # noqa: S104

    def reload(self) -> None:
        if not self.worker:
            sd.reloading()
            self.workers.signal(signal.SIGHUP)
        try:
            new_file = _reload_file(self.config_arg, None)
        except ConfigError as error:
            log.error("reload: keeping the running configuration: %s", error)
            if not self.worker:
                sd.ready("serving (reload failed: config is broken)")
            return
        new = _keep_overrides(self.file_config, self.config, new_file, warn=not self.worker)
        self.app.reconfigure(new)
        if self.generator is not None:
            self.generator.reconfigure(new)
        if self.watcher is not None:
            self.watcher.reconfigure(new)
        self.config, self.file_config = new, new_file
        if not self.worker:
            log.info("configuration reloaded: upstream %s, fallback %s, upload %s, anonymous %s (%s)",
                     _public(new.upstream.url), new.upstream.fallback,
                     "enabled" if new.upload.enabled else "disabled", new.access.anonymous,
                     new.access.reason)
            sd.ready("serving (configuration reloaded)")

    def stop(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):  # a second signal must not cut cleanup short
            signal.signal(signum, signal.SIG_IGN)
        self.stopped.set()
        if not self.worker:
            sd.stopping()
        if self.watcher is not None:
            self.watcher.stop()
        self.workers.stop()
        if self.server is not None:
            self.server.close()
        self.app.close()
        close = getattr(self.generator, "close", None)
        if callable(close) and not self.scanning:  # a running scan must not delay the stop
            close()


def _serve_worker(parent: Service, sock: socket.socket) -> None:
    """What a forked worker runs: the same app on the shared socket, reloading on SIGHUP."""
    service = Service(parent.config, parent.config_arg, file_config=parent.file_config, worker=True)
    _install_signals(service)
    _thread(_reloader, service)
    service.server = create_server(service.app, service.config, sock)
    try:
        service.server.run()
    finally:
        service.stop()


def _reload_file(config_arg: str | None, fallback: Config | None) -> Config:
    """The config as the file says, before command-line overrides; `fallback` if unreadable at start."""
    try:
        return config_module.load(config_arg)
    except ConfigError:
        if fallback is None:
            raise
        return fallback


def _keep_overrides(old_file: Config, effective: Config, new_file: Config, *, warn: bool) -> Config:
    """Command-line flags keep winning over the file; what needs a restart keeps its old value."""
    upstream = new_file.upstream
    if effective.upstream.url_source == "--upstream":
        upstream = replace(upstream, url=effective.upstream.url, url_source="--upstream")
    if effective.upstream.fallback != old_file.upstream.fallback:
        upstream = replace(upstream, fallback=effective.upstream.fallback)
    if warn and (new_file.server, new_file.paths) != (old_file.server, old_file.paths):
        log.warning("reload: the [server] settings and paths change only with a restart")
    return replace(new_file, server=effective.server, paths=effective.paths, upstream=upstream)


def _public(url: str | None) -> str:
    return display_url(url) if url else "none"


def _answers(host: str, port: int, timeout: float = 5.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(b"HEAD /simple/ HTTP/1.0\r\nHost: localhost\r\n\r\n")
            return conn.recv(12).startswith(b"HTTP/1.")
    except OSError:
        return False


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


def _watchdog(service: Service, interval: float) -> None:
    while not service.stopped.wait(interval):
        if service.healthy():
            sd.watchdog_ping()
        else:
            log.warning("watchdog: not healthy, skipping the ping")


def _reloader(service: Service) -> None:
    while not service.stopped.is_set():
        if service.reload_requested.wait(1.0):
            service.reload_requested.clear()
            if not service.stopped.is_set():
                service.reload()


def _install_signals(service: Service) -> None:
    def stop(signum: int, _frame: FrameType | None) -> None:
        if not service.worker:
            log.info("%s received, stopping", signal.Signals(signum).name)
        raise SystemExit(0)  # waitress's loop catches it and shuts its threads down

    def hup(_signum: int, _frame: FrameType | None) -> None:
        service.reload_requested.set()

    signal.signal(signal.SIGTERM, stop)
    if not service.worker:
        signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, hup)


def _thread(target: Any, *args: Any) -> None:  # noqa: ANN401
    threading.Thread(target=target, args=args, daemon=True, name=target.__name__).start()


def serve(config: Config, config_arg: str | None) -> int:
    from pypi_insiders.index import generate  # noqa: PLC0415 - keeps `serve --help` and worker start-up light

    directories.prepare(config, create=True)
    lock = directories.InstanceLock().acquire(config)
    # waitress warns on every request queued behind busy threads: per-request noise under load.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    service = Service(config, config_arg, generate.Generator.from_config(config))
    _install_signals(service)
    _thread(start_heartbeat, service)
    try:
        url = service.start()
        upstream = config.upstream
        log.info("serving %s at %s; store %s; upstream %s (%s), fallback %s; %d process(es) x %d threads",
                 config.paths.index, url, config.paths.store, _public(upstream.url), upstream.url_source,
                 upstream.fallback, config.server.processes, config.server.threads)
        access = config.access
        log.info("anonymous callers: %s (%s); public projects: %s", access.anonymous, access.reason,
                 ", ".join(sorted(access.public_projects)) or "none")
        _thread(_reloader, service)
        interval = sd.watchdog_interval()
        if interval:
            _thread(_watchdog, service, interval)
        if not service.scanning:
            service.ready.set()
            sd.ready(f"serving {url}")
        service.server.run()
    finally:
        service.stop()
        lock.release()
    log.info("stopped")
    return 1 if service.failed else 0
