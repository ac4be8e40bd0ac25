"""The one place that talks to systemd: journald logging, sd_notify and the watchdog.

Everything here is a no-op outside systemd (or without python3-systemd), so the same code
runs under `systemctl start`, in a terminal and in tests.
"""

from __future__ import annotations

import logging
import os
import sys

try:  # python3-systemd is a dependency of the .deb, optional for a pip install
    from systemd import daemon as _daemon
    from systemd import journal as _journal
except ImportError:  # pragma: no cover - depends on the host
    _daemon = None
    _journal = None

IDENTIFIER = "pypi-insiders"
ACCESS_LOG = "pypi_insiders.web.access_log"  # the per-request entries, which -q turns off


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
    # waitress logs every queue-depth warning at WARNING; keep it, but not its debug chatter.
    logging.getLogger("waitress").setLevel(max(level, logging.INFO))
    logging.getLogger(ACCESS_LOG).setLevel(logging.WARNING if quiet else logging.NOTSET)
    # urllib3 warns once per retry ("Retrying (Retry(total=2 ...") before our own clear error
    # line says what failed; with -v they stay, for whoever debugs a connection.
    logging.getLogger("urllib3").setLevel(logging.DEBUG if verbose > 0 else logging.ERROR)


def notify(**fields: object) -> bool:
    """Send `READY=1`, `STATUS=...`, `WATCHDOG=1` and the like; False when not under systemd."""
    if _daemon is None or not os.environ.get("NOTIFY_SOCKET"):
        return False
    message = "\n".join(f"{key}={value}" for key, value in fields.items())
    return bool(_daemon.notify(message))


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
