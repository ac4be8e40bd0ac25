"""The limits on one upstream file: `max_file_size` and `file_timeout`.

A file larger than `max_file_size` is refused before any byte when its size is known (the
page's `size`, upstream's `Content-Length`), and cut when its body grows past it. A download
may take `file_timeout` in all: the idle `timeout` bounds each wait for bytes, so an upstream
that trickles a byte every few seconds would otherwise hold a leader, its followers and a
`.part` file forever.
"""

from __future__ import annotations

import threading
import time

from pypi_insiders.config import UpstreamConfig
from pypi_insiders.http_client import Stream


def too_large(settings: UpstreamConfig, size: int | None) -> str | None:
    """Why a file of `size` bytes is refused (upstream.max_file_size), or None."""
    limit = settings.max_file_size
    if limit and size is not None and size > limit:
        return f"{size} bytes, more than upstream.max_file_size ({limit} bytes)"
    return None


class Deadline:
    """upstream.file_timeout over one whole download. Checked at every chunk, and enforced by a
    timer that cuts the connection: a read waiting for a whole chunk from a trickling upstream
    never times out on its own (each byte resets the idle timeout)."""

    def __init__(self, seconds: float, stream: Stream) -> None:
        self.seconds, self.began = seconds, time.monotonic()
        self._timer = threading.Timer(seconds, stream.abort) if seconds else None
        if self._timer is not None:
            self._timer.daemon = True
            self._timer.name = "mirror-file-timeout"
            self._timer.start()

    def passed(self) -> bool:
        return bool(self.seconds) and time.monotonic() - self.began >= self.seconds

    def reason(self, got: int) -> str:
        return f"{got} bytes in {self.seconds:g} s (upstream.file_timeout); the download was stopped"

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def refused_midway(settings: UpstreamConfig, got: int, size: int | None,
                   deadline: Deadline) -> tuple[str, str] | None:
    """(RESULT, detail) when a transfer must stop now, `got` bytes in: too many, or too late."""
    if size is not None and got > size:
        return "overlong", f"upstream sent more than the page's {size} bytes"
    refused = too_large(settings, got)
    if refused is not None:
        return "toolarge", f"upstream sent {refused.replace(' bytes,', ' bytes so far,', 1)}"
    if deadline.passed():
        return "timeout", deadline.reason(got)
    return None
