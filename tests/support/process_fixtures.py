"""Watching the processes a build starts, from outside its sandbox (host pids, by working directory)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def watching_processes_in(directory: Path, seen: set[int]) -> Iterator[None]:
    """Collect, while the block runs, the pids of processes working in `directory` (host pids)."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.1):
            seen.update(processes_in(directory))

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


def gone_within(pid: int, seconds: float) -> bool:
    """Whether the process ends (or is a zombie waiting for its new parent) within the time."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            return True
        if fields[0] in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False
