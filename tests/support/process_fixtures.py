"""Watching the processes a build starts, from outside its sandbox (host pids, by working directory)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def watching_processes_in(directory: Path, seen: dict[int, int]) -> Iterator[None]:
    """Collect, while the block runs, the processes working in `directory`: host pid -> start time.

    The start time goes with the pid because pids are reused: on a busy host with the default
    pid_max (32768) they wrap within minutes, and a pid seen early in a long build may name
    another process by the time it is checked.
    """
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.1):
            for pid in processes_in(directory) - seen.keys():
                started = start_time(pid)
                if started is not None:  # else gone already
                    seen[pid] = started

    thread = threading.Thread(target=watch)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def processes_in(directory: Path) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and str((entry / "cwd").readlink()).startswith(str(directory)):
                found.add(int(entry.name))
    return found


def sandboxed(pids: set[int]) -> bool:
    """Whether one of them runs inside a sandbox already (another PID namespace than ours): bwrap
    has then set its parent-death signal. Killing its parent before that (between the fork and
    bwrap's prctl, a few milliseconds) is a race bwrap cannot see."""
    ours = Path("/proc/self/ns/pid").readlink()
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/ns/pid").readlink() != ours:
                return True
    return False


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from its third field (state) on; None once the process is reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None


def start_time(pid: int) -> int | None:
    """When the process started (clock ticks after boot); None if it is gone already."""
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[19])  # field 22 of proc(5)


def gone_within(pid: int, seconds: float, started: int | None = None) -> bool:
    """Whether the process ends (or is a zombie waiting for its new parent) within the time;
    with `started`, a process holding the pid with another start time is another process."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        fields = _stat_fields(pid)
        if fields is None or fields[0] in ("Z", "X"):
            return True
        if started is not None and int(fields[19]) != started:
            return True
        time.sleep(0.05)
    return False
