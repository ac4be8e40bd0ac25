"""`[server] processes = N`: extra waitress processes forked onto the one listening socket.

A waitress process is held to one core by the GIL, so on a machine with several cores one
process is the ceiling for requests per second. The kernel hands each accepted connection to
one of the processes sharing the socket. Only the parent generates the index and watches the
store; the workers serve the same files from disk, and their page caches notice a regenerated
page by its stat like the parent's does. Workers are forked before the parent starts any
thread, so no lock is inherited held.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable

from pypi_insiders.config import Config

log = logging.getLogger(__name__)

_PARENT_CHECK = 1.0


def bind(config: Config) -> socket.socket:
    """The listening socket every process shares (port 0 picks one for all of them)."""
    host = "127.0.0.1" if config.server.host == "localhost" else config.server.host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((host, config.server.port))
    sock.listen(1024)
    return sock


def fork(count: int, serve: Callable[[], None]) -> list[int]:
    """Start `count` workers running `serve`; returns their PIDs (the parent's view).

    The parent's objects are frozen out of the garbage collector first: a collection in a
    worker would otherwise write to every object it visits, copying the pages the worker
    shares with the parent (the loaded code and config) into memory of its own.
    """
    gc.collect()
    trim_heap()
    gc.freeze()
    pids = []
    try:
        for number in range(1, count + 1):
            pid = os.fork()
            if pid == 0:
                _worker(number, serve)  # never returns
            pids.append(pid)
    finally:
        gc.unfreeze()  # the parent's own collections go on as before (its pages are its own)
    return pids


_M_MMAP_THRESHOLD = -3  # mallopt parameters, from glibc's malloc.h
_M_ARENA_MAX = -8
_MMAP_FROM = 256 * 1024  # bytes: larger blocks (page bodies, send buffers) are mapped alone


def tune_heap() -> None:
    """One malloc arena and a fixed mmap threshold, for a server of many threads that runs for
    months; called before any thread starts.

    glibc gives threads arenas of their own (up to 8 per core) and raises its mmap threshold
    each time a large block is freed, so a page body read by one waitress thread is later
    carved out of an arena, which keeps the memory after it is freed. At 20,000 projects, after
    load, both processes together held 142 MB (PSS); with this, 84 MB. The GIL already makes
    the threads take turns, so one arena costs them nothing measurable.
    """
    with contextlib.suppress(OSError, AttributeError):  # not glibc: its own allocator's ways
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_ARENA_MAX, 1)
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_FROM)


def trim_heap() -> None:
    """Hand freed heap back to the kernel (before forking, after a generation): glibc keeps it."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: it stays mapped, shared copy-on-write
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _worker(number: int, serve: Callable[[], None]) -> None:
    parent = os.getppid()
    status = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides, and sends SIGTERM
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
        serve()
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else 0
    except BaseException:
        log.exception("worker %d failed", number)
        status = 1
    finally:
        logging.shutdown()
        os._exit(status)


def _exit_with_parent(parent: int) -> None:
    """A worker must not outlive a parent killed with SIGKILL, holding the port."""
    while os.getppid() == parent:
        time.sleep(_PARENT_CHECK)
    os.kill(os.getpid(), signal.SIGTERM)


class Workers:
    """The forked workers, as the parent sees them."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self._gone: set[int] = set()

    def alive(self) -> bool:
        """Whether every worker still runs; a dead one is reaped and logged once."""
        for pid in self.pids:
            if pid in self._gone:
                continue
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done:
                log.error("worker %d exited (status %d)", pid, status)
                self._gone.add(pid)
        return not self._gone

    def signal(self, signum: int) -> None:
        for pid in self.pids:
            if pid not in self._gone:
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    self._gone.add(pid)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every worker, wait for them within `timeout`, SIGKILL what is left."""
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        waiting = set(self.pids) - self._gone
        while waiting and time.monotonic() < deadline:
            for pid in list(waiting):
                try:
                    done, _status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done = pid
                if done:
                    waiting.discard(pid)
                    self._gone.add(pid)
            time.sleep(0.02)
        for pid in waiting:
            log.warning("worker %d did not stop in time; killing it", pid)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            self._gone.add(pid)
