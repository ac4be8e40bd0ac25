"""The access and audit log: who read which local project's page or file, and what was refused.

One entry per request for a local project's page or file (whatever its status), and per
refused request (401, 403, 429 anywhere, 404 of files and of local names). Refusals are
limited to `REFUSALS_PER_SECOND` entries a second, so a flood of 404s cannot flood the journal;
what is left out is counted and said in one entry, with the first entry after that second (or
at shutdown). Requests for
names that are not local (upstream redirects and proxied pages) and the root list are not
logged: pip asks for one per dependency.

Under journald each entry has the fields CLIENT (the caller's address: from `[server]
trusted_proxy`, the IP address its X-Forwarded-For ends with, see `forwarded.py`), USER (when
authenticated), PROJECT, FILE (file and metadata reads), STATUS, BYTES (the body's size; for a
file that nginx sends, the file's) and DURATION_MS (until the answer was ready, before its body
is sent), so `journalctl PROJECT=name` lists everything done with a project. Elsewhere the
message is one line on stderr. The request's own headers never reach it: no credentials, and the
path without its query string; the client, the method and the path with anything unprintable
(and any quote) percent-encoded, so no request can make a line that reads as another entry.

`[server] access_log = false` turns it off; `-q` too.

A request pays only for a tuple put on a queue: a writer thread of each process (started at its
first entry, so forked workers have their own) makes the records, in batches, at most
`_WRITE_EVERY` seconds later and at shutdown. Making a log record costs as much as serving a
page from memory, and the request threads are what the benchmark measures.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final

from pypi_insiders.web.response import Response

log = logging.getLogger(__name__)

REFUSALS_PER_SECOND: Final = 20
_REFUSED: Final = frozenset({401, 403, 429})
_NO_BODY: Final = frozenset({204, 304})
_PATH_SHOWN: Final = 200  # characters of the path kept in a line
_WRITE_EVERY: Final = 0.1  # seconds an entry may wait for the writer thread
_QUEUE_LIMIT: Final = 100_000  # entries waiting at most; beyond, the oldest go (a stuck journal)

# client, user, method, path, status, bytes, milliseconds, project, file: what a request leaves
_Entry = tuple[str, str | None, str, str, int, int, float, str | None, str | None]
_UNPRINTABLE: Final = re.compile(r"[^!#$&-~]")  # all but printable ASCII, '"' and '%'


class _RefusalLimit:
    """At most `per_second` refusals a second; the count of the others, once their second is over."""

    def __init__(self, per_second: int, clock: Callable[[], float]) -> None:
        self.per_second, self.clock = per_second, clock
        self._lock = threading.Lock()
        self._second = -1
        self._logged = 0
        self._suppressed = 0  # in the current second
        self._carried = 0  # in seconds that are over, not said yet

    def admit(self) -> bool:
        with self._lock:
            self._roll()
            if self._logged >= self.per_second:
                self._suppressed += 1
                return False
            self._logged += 1
            return True

    def overdue(self, *, now: bool = False) -> int:
        """Refusals left out in seconds that are over (with `now`, the current one's too), once."""
        if not (self._carried or self._suppressed):  # the usual case, without the lock; a race
            return 0  # only delays the count to the next entry
        with self._lock:
            self._roll()
            found, self._carried = self._carried, 0
            if now:
                found, self._suppressed = found + self._suppressed, 0
            return found

    def _roll(self) -> None:
        second = int(self.clock())
        if second != self._second:
            self._carried += self._suppressed
            self._second, self._logged, self._suppressed = second, 0, 0


class AccessLog:
    """Decides per request whether it is logged, and queues the entry for the writer thread."""

    def __init__(self, *, per_second: int = REFUSALS_PER_SECOND,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = _RefusalLimit(per_second, clock)
        self._queue: deque[_Entry] = deque(maxlen=_QUEUE_LIMIT)
        self._write_lock = threading.Lock()  # one batch at a time: entries stay in order
        self._writer_pid = 0  # the process whose writer thread runs
        _LOGS.add(self)

    def record(self, environ: Mapping[str, Any], response: Response, began: float) -> None:
        """`response` as sent (`finish.py`): its status, headers and facts; who asked is the
        request's REMOTE_USER."""
        if not log.isEnabledFor(logging.INFO):
            return
        code = response.code
        project, file = response.project, response.file
        audited = project is not None or file is not None
        refused = code in _REFUSED or (code == 404 and audited)
        if not audited and not refused:
            return
        if refused and not self._limit.admit():
            return
        method = str(environ.get("REQUEST_METHOD", "-"))
        self._queue.append((str(environ.get("REMOTE_ADDR") or "-"), environ.get("REMOTE_USER"), method,
                            str(environ.get("PATH_INFO") or "/"), code, _body_size(method, response),
                            (time.perf_counter() - began) * 1000, project, file))
        if self._writer_pid != os.getpid():
            self._start_writer()

    def drain(self) -> None:
        """Write every queued entry now (the writer thread does it on its own a moment later)."""
        with self._write_lock:
            if not self._queue:
                return
            while self._queue:
                _write(self._queue.popleft())
            self._say_left_out(now=False)
            self._flush_handlers()

    @staticmethod
    def _flush_handlers() -> None:
        for handler in log.handlers:
            try:
                handler.flush()
            except (OSError, ValueError):  # a stream closed under us: the lines are lost, not the log
                continue

    def flush(self, *, now: bool = False) -> None:
        """At shutdown (`now`): the queued entries, and how many refusals were left out."""
        self.drain()
        if now:
            with self._write_lock:
                self._say_left_out(now=True)
                self._flush_handlers()

    def _say_left_out(self, *, now: bool) -> None:
        left_out = self._limit.overdue(now=now)
        if left_out:
            log.warning("access log: %d refused requests not logged (more than %d a second)", left_out,
                        self._limit.per_second, extra={"SUPPRESSED": str(left_out)})

    def _forked(self) -> None:
        """In a new child: the parent's writer thread and its lock did not come along."""
        self._write_lock = threading.Lock()
        self._queue.clear()

    def _start_writer(self) -> None:
        with self._write_lock:
            if self._writer_pid == os.getpid():
                return
            self._writer_pid = os.getpid()
            threading.Thread(target=self._write_forever, name="access-log", daemon=True).start()

    def _write_forever(self) -> None:
        while True:
            time.sleep(_WRITE_EVERY)
            try:
                self.drain()
            except Exception:  # a broken handler must not end the access log
                log.exception("access log: an entry could not be written")


_LOGS: weakref.WeakSet[AccessLog] = weakref.WeakSet()


def _after_fork() -> None:
    for each in list(_LOGS):
        each._forked()


os.register_at_fork(after_in_child=_after_fork)


def _write(entry: _Entry) -> None:
    client, user, method, raw_path, code, size, duration, project, file = entry
    fields = {"CLIENT": _printable(client, 64), "STATUS": str(code), "BYTES": str(size),
              "DURATION_MS": f"{duration:.1f}"}
    if user:
        fields["USER"] = str(user)
    if project is not None:
        fields["PROJECT"] = str(project)
    if file is not None:
        fields["FILE"] = _printable(str(file), _PATH_SHOWN)
    path = _printable(raw_path, _PATH_SHOWN)
    message = (f'{_printable(client, 64)} {user or "-"} "{_printable(method, 16)} {path}" {code} {size} '
               f"{duration:.1f}ms")
    # Made and handled directly: the logger's search of the caller's frame costs as much as all
    # the rest (and it is always this function).
    log.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, message, (), None, extra=fields))


def _body_size(method: str, response: Response) -> int:
    if method == "HEAD" or response.code in _NO_BODY:
        return 0
    if response.proxy_sends is not None:
        return response.proxy_sends
    for key, value in response.headers:
        if key == "Content-Length":
            return int(value) if value.isdigit() else 0
    return 0


def _encoded(match: re.Match[str]) -> str:
    return f"%{ord(match.group()) & 0xFF:02X}"


def _printable(text: str, limit: int) -> str:
    """The raw bytes (WSGI strings are latin-1) with anything but printable ASCII percent-encoded."""
    shown = _UNPRINTABLE.sub(_encoded, text[:limit])
    return shown + ("..." if len(text) > limit else "")

