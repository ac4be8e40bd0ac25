"""The one place that talks to systemd: journald logging, sd_notify and the watchdog.

Everything here is a no-op outside systemd (or without python3-systemd), so the same code
runs under `systemctl start`, in a terminal and in tests.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys

try:  # python3-systemd is a dependency of the .deb, optional for a pip install
    from systemd import daemon as _daemon
    from systemd import journal as _journal
except ImportError:  # pragma: no cover - depends on the host
    _daemon = None
    _journal = None

IDENTIFIER = "pypi-insiders"
ACCESS_LOG = "pypi_insiders.web.access_log"  # the per-request entries, which -q turns off


def trigger_unit() -> str | None:
    """The unit that started this service (a timer, a path unit), as systemd says in $TRIGGER_UNIT."""
    return os.environ.get("TRIGGER_UNIT") or None


def under_journald() -> bool:
    """systemd sets JOURNAL_STREAM when stderr is connected to the journal."""
    return bool(os.environ.get("JOURNAL_STREAM")) and _journal is not None


class _CommandLineFormatter(logging.Formatter):
    """Plain messages for info, a level prefix for what needs attention."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {text}"
        return text


class _AccessJournal(logging.Handler):
    """The access log's entries with their own fields: the stock handler sends every attribute of
    a record, two dozen fields, which for one entry per request costs more than the request."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = {key: value for key, value in vars(record).items() if key.isupper()}
            if _journal is not None:
                _journal.send(record.getMessage(), PRIORITY=str(_priority(record.levelno)),
                              SYSLOG_IDENTIFIER=IDENTIFIER, LOGGER=record.name, **fields)
        except Exception:  # noqa: BLE001 - logging's own contract: report, never raise
            self.handleError(record)


class _AccessLines(logging.StreamHandler):  # type: ignore[type-arg]
    """Access lines on stderr, flushed once per batch of the access log's writer, not per line."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)
        except Exception:  # noqa: BLE001 - as logging.StreamHandler does
            self.handleError(record)

    def flush(self) -> None:
        """Called once per batch by the writer thread: a closed or broken stream loses lines, not
        the writer (stderr may be gone at shutdown)."""
        with contextlib.suppress(OSError, ValueError):
            super().flush()


def _priority(level: int) -> int:
    """syslog's priorities, as journalctl -p knows them."""
    if level >= logging.ERROR:
        return 3
    if level >= logging.WARNING:
        return 4
    return 6 if level >= logging.INFO else 7


def setup_logging(verbose: int = 0, *, quiet: bool = False, daemon: bool = False) -> None:
    """Journald with structured fields under systemd; readable lines on stderr otherwise.

    `quiet` (-q): no access log entries, wherever they would go.
    """
    level = logging.DEBUG if verbose > 0 else logging.INFO
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    handler: logging.Handler
    if under_journald() and _journal is not None:
        handler = _journal.JournalHandler(SYSLOG_IDENTIFIER=IDENTIFIER)
    else:
        handler = logging.StreamHandler(sys.stderr)
        if daemon:
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        else:
            handler.setFormatter(_CommandLineFormatter("%(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    _setup_access_log(handler, quiet=quiet)
    # waitress logs every queue-depth warning at WARNING; keep it, but not its debug chatter.
    logging.getLogger("waitress").setLevel(max(level, logging.INFO))
    # urllib3 warns once per retry ("Retrying (Retry(total=2 ...") before our own clear error
    # line says what failed; with -v they stay, for whoever debugs a connection.
    logging.getLogger("urllib3").setLevel(logging.DEBUG if verbose > 0 else logging.ERROR)


def notify(**fields: object) -> bool:
    """Send `READY=1`, `STATUS=...`, `WATCHDOG=1` and the like; False when nobody listens.

    `NOTIFY_SOCKET` is set by systemd, or by `server start` outside it (service/background.py);
    without python3-systemd (a pip install) the datagram is sent here, the protocol being one
    datagram of KEY=VALUE lines to that socket ("@" for the abstract namespace).
    """
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    message = "\n".join(f"{key}={value}" for key, value in fields.items())
    if _daemon is not None:
        try:
            return bool(_daemon.notify(message))
        except OSError:  # `server start` went away after READY=1: nobody listens any more
            return False
    return _send_datagram(address, message.encode())


def _send_datagram(address: str, data: bytes) -> bool:
    target = "\0" + address[1:] if address.startswith("@") else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(data, target)
    except OSError:
        return False
    return True


def ready(status: str) -> None:
    notify(READY=1, STATUS=status)


def status(text: str) -> None:
    notify(STATUS=text)


def stopping(text: str = "stopping") -> None:
    notify(STOPPING=1, STATUS=text)


def reloading(text: str = "reloading configuration") -> None:
    notify(RELOADING=1, STATUS=text)


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half the unit's WatchdogSec), None when not asked for."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


def watchdog_ping() -> None:
    notify(WATCHDOG=1)


def _setup_access_log(common: logging.Handler, *, quiet: bool) -> None:
    """The access log gets a handler of its own, cheaper per entry; -q keeps only its warnings."""
    access = logging.getLogger(ACCESS_LOG)
    for old in list(access.handlers):
        access.removeHandler(old)
    own: logging.Handler
    if isinstance(common, logging.StreamHandler):
        own = _AccessLines(common.stream)
        own.setFormatter(common.formatter)
    else:
        own = _AccessJournal()
    access.addHandler(own)
    access.propagate = False
    access.setLevel(logging.WARNING if quiet else logging.NOTSET)
