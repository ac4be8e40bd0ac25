"""Local mode's pypi-insiders-fetch.path: a watchdog observer on the fetch queue directory.

Where no systemd path unit runs (`pypi-insiders watcher start` on a laptop), this wakes the
watcher's loop when the index queues a repository: `wake(QUEUED)` on every finished entry
(`*.queued`; the index's temp files are hidden and ignored), and once at start when entries are
already waiting. The run it wakes claims the queue as a path-triggered run does
(`runner.run_queued`), so pushes during a run wake it once more, never more often than they come.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler, FileSystemMovedEvent
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from pypi_insiders import fetch_queue

log = logging.getLogger(__name__)

QUEUED = "queued"  # the reason a run starts when a webhook queued a repository


def is_entry(path: str | bytes | None) -> bool:
    if not isinstance(path, str):
        return False
    name = path.rpartition("/")[2]
    return name.endswith(fetch_queue.SUFFIX) and not name.startswith(".")


class _Entries(FileSystemEventHandler):
    def __init__(self, wake: Callable[[str], None]) -> None:
        self._wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type == "deleted" or event.is_directory:
            return
        paths = [event.src_path, event.dest_path if isinstance(event, FileSystemMovedEvent) else None]
        if any(is_entry(p) for p in paths):
            self._wake(QUEUED)


class QueueWatch:
    """Started and stopped with the watcher; without inotify, the interval's full runs remain."""

    def __init__(self, queue: Path, wake: Callable[[str], None]) -> None:
        self.queue, self.wake = queue, wake
        self._observer: BaseObserver | None = None

    def start(self) -> None:
        self.queue.mkdir(mode=0o750, parents=True, exist_ok=True)
        observer = Observer()  # type: ignore[no-untyped-call]
        observer.schedule(_Entries(self.wake), str(self.queue), recursive=False)  # type: ignore[no-untyped-call]
        try:
            observer.start()  # type: ignore[no-untyped-call]
        except OSError as error:
            limit = error.errno in (errno.ENOSPC, errno.EMFILE)
            hint = " (raise fs.inotify.max_user_instances)" if limit else ""
            log.warning("cannot watch %s: %s%s; queued repositories wait for the next run", self.queue,
                        error.strerror, hint, extra={"FILE": str(self.queue)})
            return
        self._observer = observer
        if fetch_queue.pending(self.queue):  # queued while no watcher ran
            self.wake(QUEUED)

    def stop(self, timeout: float = 10.0) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()  # type: ignore[no-untyped-call]
            observer.join(timeout)
