"""Background processes with a PID file and a log file, where no systemd user manager runs.

`server start` and `watcher start` on a machine without systemd (a container, WSL, a login
without a user session) start `serve` or `watch` in a session of its own, its output appended
to a log file, and wait until it says it is ready: the child gets a `NOTIFY_SOCKET` of our own
(an abstract socket, nothing on disk), so the one `READY=1` that systemd waits for serves here
too, and a start that fails shows the end of the log instead of a PID that is already dead.

The PID file holds the PID and the process's start time (from /proc): a PID the kernel gave to
another process since is recognised as stale, so `stop` never signals a stranger.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pypi_insiders.errors import ServiceError
from pypi_insiders.files import atomic_write, exclusive_lock
from pypi_insiders.wording import utc

READY_TIMEOUT = 90.0  # seconds without a word from a starting child before giving up on it
STOP_TIMEOUT = 30.0  # seconds a stopping child may take before it is killed
_KILL_WAIT = 5.0
_LOG_KEEP = 10 * 1024 * 1024  # a log past this size is moved to NAME.log.1 at the next start
_TAIL = 15  # log lines shown when a start fails
_UNWANTED_ENV = ("NOTIFY_SOCKET", "JOURNAL_STREAM", "INVOCATION_ID", "WATCHDOG_USEC", "WATCHDOG_PID",
                 "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


@dataclass(frozen=True)
class Files:
    """Where one background role keeps its PID, its log and the lock of its start and stop."""

    pid: Path
    log: Path
    lock: Path

    @classmethod
    def of(cls, directory: Path, role: str) -> Files:
        return cls(directory / f"{role}.pid", directory / f"{role}.log", directory / f"{role}.lock")


@dataclass(frozen=True)
class Running:
    pid: int
    started: float  # seconds since the epoch


def _start_ticks(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot); None for a dead or
    zombie process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def _boot_time() -> float:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


def read_pid(files: Files) -> tuple[Running | None, int | None]:
    """(the live process, None) or (None, the stale PID) or (None, None) without a PID file."""
    try:
        pid_text, ticks = files.pid.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None, None
    if _start_ticks(pid) != ticks:
        return None, pid
    started = _boot_time() + int(ticks) / os.sysconf("SC_CLK_TCK")
    return Running(pid, started), None


def _prepare(files: Files) -> None:
    files.pid.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):
        if files.log.stat().st_size > _LOG_KEEP:
            files.log.replace(files.log.with_name(files.log.name + ".1"))


def start(role: str, argv: Sequence[str], files: Files, *, ready_timeout: float = READY_TIMEOUT) -> str:
    """Start `argv` in the background and wait for its READY=1; returns what to tell the user.
    Raises ServiceError, with the end of its log, when the child dies or stays silent."""
    _prepare(files)
    with exclusive_lock(files.lock):
        running, stale = read_pid(files)
        if running is not None:
            return f"{role} is already running (PID {running.pid}); log: {files.log}"
        if stale is not None:
            files.pid.unlink(missing_ok=True)
        with _notify_socket() as (sock, address):
            pid = _spawn(argv, files.log, address)
            ticks = _start_ticks(pid) or "0"
            atomic_write(files.pid, f"{pid} {ticks}\n".encode(), 0o600)
            _wait_ready(role, pid, sock, files, ready_timeout)
    note = f" (replaced a stale PID file of PID {stale})" if stale is not None else ""
    return f"{role} started (PID {pid}){note}; log: {files.log}"


@contextlib.contextmanager
def _notify_socket() -> Iterator[tuple[socket.socket, str]]:
    name = f"pypi-insiders-{os.getpid()}-{secrets.token_hex(8)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.bind("\0" + name)
        yield sock, "@" + name


def _spawn(argv: Sequence[str], log_file: Path, notify_address: str) -> int:
    env = {key: value for key, value in os.environ.items() if key not in _UNWANTED_ENV}
    env["NOTIFY_SOCKET"] = notify_address
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log_file), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    try:
        return os.posix_spawn(argv[0], list(argv), env, file_actions=actions, setsid=True)
    except OSError as error:
        msg = f"cannot start {argv[0]}: {error.strerror or error}"
        raise ServiceError(msg) from None


def _wait_ready(role: str, pid: int, sock: socket.socket, files: Files, timeout: float) -> None:
    """Until READY=1; every other message (STATUS, EXTEND_TIMEOUT_USEC) shows the child lives."""
    deadline = time.monotonic() + timeout
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            message = sock.recv(4096).decode(errors="replace")
            if "READY=1" in message.splitlines():
                return
            deadline = max(deadline, time.monotonic() + timeout)
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            files.pid.unlink(missing_ok=True)
            code = os.waitstatus_to_exitcode(status)
            raise ServiceError([f"{role} exited with status {code} before it was ready; "
                                f"the end of its log ({files.log}):",
                                *(f"  {line}" for line in tail(files.log, _TAIL))])
    msg = (f"{role} (PID {pid}) said nothing for {timeout:.0f} s and is not ready; it keeps "
           f"running: see {files.log}, or stop it with `pypi-insiders {role} stop`")
    raise ServiceError(msg)


def stop(role: str, files: Files, *, timeout: float = STOP_TIMEOUT) -> str:
    """SIGTERM, then SIGKILL to its whole session after `timeout`; not running is no error."""
    _prepare(files)
    with exclusive_lock(files.lock):
        running, stale = read_pid(files)
        if running is None:
            files.pid.unlink(missing_ok=True)
            return f"{role} is not running" + (f" (removed a stale PID file of PID {stale})"
                                               if stale is not None else "")
        ticks = _start_ticks(running.pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(running.pid, signal.SIGTERM)
        if not _gone(running.pid, ticks, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(running.pid, signal.SIGKILL)
            if not _gone(running.pid, ticks, _KILL_WAIT):
                msg = f"{role} (PID {running.pid}) survived SIGKILL; its PID file stays"
                raise ServiceError(msg)
            files.pid.unlink(missing_ok=True)
            return f"{role} (PID {running.pid}) did not stop within {timeout:.0f} s and was killed"
        files.pid.unlink(missing_ok=True)
    return f"{role} stopped (PID {running.pid})"


def _gone(pid: int, ticks: str | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _start_ticks(pid) == ticks:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def status(role: str, files: Files) -> tuple[int, list[str]]:
    """systemctl's exit statuses: 0 running, 3 not running."""
    running, stale = read_pid(files)
    if running is None:
        why = (f" (stale PID file {files.pid}: PID {stale} is gone; `{role} start` replaces it)"
               if stale is not None else "")
        return 3, [f"{role}: not running{why}", f"log: {files.log}"]
    return 0, [f"{role}: running (PID {running.pid}, since {utc(running.started)})", f"log: {files.log}",
               *tail(files.log, 5)]


def tail(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a file (the whole of a small one, the end of a large one)."""
    if lines <= 0:
        return []
    try:
        with path.open("rb") as stream:
            size = stream.seek(0, os.SEEK_END)
            stream.seek(max(0, size - 256 * lines))
            data = stream.read()
    except OSError:
        return []
    return data.decode(errors="replace").splitlines()[-lines:]


def follow(path: Path, lines: int, *, poll: float = 0.5) -> None:
    """`logs -f`: the last lines, then whatever is appended, until interrupted."""
    for line in tail(path, lines):
        print(line, flush=True)
    position = path.stat().st_size if path.exists() else 0
    while True:
        time.sleep(poll)
        try:
            size = path.stat().st_size
        except OSError:
            continue
        if size < position:  # moved away by a start: read the new file from its beginning
            position = 0
        if size > position:
            with path.open("rb") as stream:
                stream.seek(position)
                data = stream.read()
            position += len(data)
            sys.stdout.write(data.decode(errors="replace"))
            sys.stdout.flush()
