"""Filesystem events on the store -> debounced `Generator.update_paths`, plus a periodic rescan.

A build drops several files at once and an upload is a temp file then a link, so events are
collected until the store has been quiet for `index.debounce` seconds (never longer than
`_MAX_DELAY`, so a steady stream still gets published) and handed over as one batch of
store-relative paths. Events can be missed (inotify queue overflow, watch limits, changes
made while we were stopped), so a full rescan runs every `index.rescan_interval` seconds and
once right after start. The watcher never renders anything itself: the generator does.
It also watches `<state>/yanked.json` (`index.yanks`): a yank made while the index runs
renders that project again at once.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from watchdog.events import (
    DirModifiedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
    FileSystemMovedEvent,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from pypi_insiders.config import Config
from pypi_insiders.state_layout import StateLayout
from pypi_insiders.store import is_hidden

log = logging.getLogger(__name__)

_MAX_DELAY = 2.0  # seconds: a batch is published at the latest this long after its first event
_RETRY_AFTER_FAILURE = 10.0  # seconds until a full rescan after a failed regeneration


class Generates(Protocol):
    def generate_all(self) -> None: ...

    def update_paths(self, relpaths: Iterable[str]) -> None: ...

    def refresh_yanks(self) -> None: ...


def coalesce(relpaths: Iterable[str]) -> list[str]:
    """Drop paths below another path of the batch: syncing a directory covers its contents."""
    kept: list[str] = []
    for path in sorted(set(relpaths)):
        if kept and (kept[-1] == "" or path.startswith(kept[-1] + "/")):
            continue
        kept.append(path)
    return kept


class _Events(FileSystemEventHandler):
    """Turns watchdog events into store-relative paths; a directory's own "modified" is noise."""

    def __init__(self, root: str, notify: Callable[[list[str]], None]) -> None:
        self._root = root
        self._notify = notify

    def relpath(self, path: str | bytes | None) -> str | None:
        if not isinstance(path, str):
            return None
        if path == self._root:
            return ""
        if not path.startswith(self._root + "/"):
            return None
        relpath = path[len(self._root) + 1:]
        return None if any(is_hidden(part) for part in relpath.split("/")) else relpath

    def on_any_event(self, event: FileSystemEvent) -> None:
        if isinstance(event, DirModifiedEvent):
            return
        paths = [event.src_path]
        if isinstance(event, FileSystemMovedEvent):
            paths.append(event.dest_path)
        relpaths = [r for r in map(self.relpath, paths) if r is not None]
        if relpaths:
            self._notify(relpaths)


class _YankEvents(FileSystemEventHandler):
    """Any event naming the yank file (it is replaced whole, so mostly a move onto it)."""

    def __init__(self, path: str, notify: Callable[[], None]) -> None:
        self._path = path
        self._notify = notify

    def on_any_event(self, event: FileSystemEvent) -> None:
        if self._path in (event.src_path, getattr(event, "dest_path", None)):
            self._notify()


class Watcher:
    def __init__(self, config: Config, generator: Generates) -> None:
        self._root = config.paths.store
        self._yank_file = StateLayout(config.paths.state).yanks
        self._yanks_changed = False
        self._debounce = config.index.debounce
        self._rescan_interval = config.index.rescan_interval
        self._generator = generator
        self._condition = threading.Condition()
        self._pending: set[str] = set()
        self._first_event = self._last_event = 0.0
        self._next_rescan = 0.0  # right after start: catch what changed before the watch began
        self._stopping = False
        self._observer: BaseObserver | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Returns at once: setting up 20,000 inotify watches takes seconds, serving must not wait."""
        self._root.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="index-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
            observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()  # type: ignore[no-untyped-call]
            observer.join(timeout)
        if self._thread is not None:
            self._thread.join(timeout)

    def reconfigure(self, config: Config) -> None:
        """New debounce and rescan interval; the store path itself needs a restart."""
        with self._condition:
            self._debounce = config.index.debounce
            self._next_rescan += config.index.rescan_interval - self._rescan_interval
            self._rescan_interval = config.index.rescan_interval
            self._condition.notify_all()

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _start_observer(self) -> BaseObserver | None:
        """An inotify limit is not fatal: the periodic rescan still publishes every change."""
        root = str(self._root.resolve())
        observer = Observer()  # type: ignore[no-untyped-call]
        observer.schedule(_Events(root, self._notify), root, recursive=True)  # type: ignore[no-untyped-call]
        state = self._yank_file.parent.resolve()
        state.mkdir(parents=True, exist_ok=True)
        observer.schedule(_YankEvents(str(state / self._yank_file.name), self._notify_yanks),  # type: ignore[no-untyped-call]
                          str(state), recursive=False)
        try:
            observer.start()  # type: ignore[no-untyped-call]
        except OSError as error:
            hint = (": raise fs.inotify.max_user_watches or max_user_instances"
                    if error.errno in (errno.ENOSPC, errno.EMFILE) else "")
            log.warning("cannot watch %s (%s%s); new files appear only at the rescan every %.0f s",
                        self._root, error.strerror, hint, self._rescan_interval,
                        extra={"FILE": str(self._root)})
            return None
        return observer

    def _notify(self, relpaths: list[str]) -> None:
        now = time.monotonic()
        with self._condition:
            if not self._pending:
                self._first_event = now
            self._pending.update(relpaths)
            self._last_event = now
            self._condition.notify_all()

    def _notify_yanks(self) -> None:
        with self._condition:
            self._yanks_changed = True
            self._condition.notify_all()

    def _run(self) -> None:
        observer = self._start_observer()
        with self._condition:
            if not self._stopping:
                self._observer, observer = observer, None
        if observer is not None:  # stop() came while the watches were being set up
            observer.stop()  # type: ignore[no-untyped-call]
            observer.join()
            return
        failed: set[str] = set()  # paths of a failed batch ride along with the next one
        while True:
            batch, rescan = self._wait_for_work()
            if batch is None:
                return
            if batch:
                batch |= failed
                failed = set() if self._safely(self._generator.update_paths, coalesce(batch)) else batch
                if "" in batch and self._rewatch_if_lost():
                    rescan = True
            if rescan and self._safely(self._generator.generate_all):
                failed = set()
            if self._take_yank_change():
                self._safely(self._generator.refresh_yanks)

    def _take_yank_change(self) -> bool:
        with self._condition:
            changed, self._yanks_changed = self._yanks_changed, False
        return changed

    def _rewatch_if_lost(self) -> bool:
        """inotify drops the watch when the store directory itself is deleted: watch the new one."""
        with self._condition:
            observer = self._observer
        if observer is None:
            return False
        store = [e for e in observer.emitters if e.watch.is_recursive]  # not the yank file's watch
        for emitter in store:
            emitter.join(1.0)  # a deleted root ends its emitter; give it a moment to finish
        if any(emitter.is_alive() for emitter in store):
            return False
        log.warning("the watch on %s ended (the directory was deleted or replaced); watching it again",
                    self._root, extra={"FILE": str(self._root)})
        observer.stop()  # type: ignore[no-untyped-call]
        observer.join(5.0)
        self._root.mkdir(parents=True, exist_ok=True)
        fresh = self._start_observer()
        with self._condition:
            if not self._stopping:
                self._observer, fresh = fresh, None
        if fresh is not None:
            fresh.stop()  # type: ignore[no-untyped-call]
        return True

    def _wait_for_work(self) -> tuple[set[str] | None, bool]:
        """(batch of paths, whether a full rescan is due); None when stopping."""
        with self._condition:
            while not self._stopping:
                now = time.monotonic()
                rescan = now >= self._next_rescan
                settled = self._pending and (now - self._last_event >= self._debounce
                                             or now - self._first_event >= _MAX_DELAY)
                if rescan or settled or self._yanks_changed:
                    batch: set[str] = set()
                    if settled:
                        batch, self._pending = self._pending, set()
                    if rescan:
                        self._next_rescan = now + self._rescan_interval
                    return batch, rescan
                self._condition.wait(self._timeout(now))
            return None, False

    def _timeout(self, now: float) -> float:
        deadline = self._next_rescan
        if self._pending:
            deadline = min(deadline, self._last_event + self._debounce, self._first_event + _MAX_DELAY)
        return max(deadline - now, 0.001)

    def _safely(self, work: Callable[..., None], *args: object) -> bool:
        """A failed regeneration must not end the watcher: log it and rescan soon."""
        try:
            work(*args)
        except Exception:
            log.exception("index regeneration failed; a full rescan follows in %.0f s", _RETRY_AFTER_FAILURE)
            with self._condition:
                self._next_rescan = min(self._next_rescan, time.monotonic() + _RETRY_AFTER_FAILURE)
            return False
        return True
