"""A file transfer's parts that both the leader and its followers use: the answer's body for
the WSGI server, the lock test, the writes to the `.part` file and the journal lines.

The journal gets one line per file stored, passed through, refused or mismatched, with the
fields `PROJECT`, `FILE`, `SHA256`, `RESULT` (and `BYTES`, `MS` when bytes moved), so
`journalctl RESULT=mismatch` finds every corrupt download upstream gave.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from packaging.utils import NormalizedName

from pypi_insiders.http_client import Stream
from pypi_insiders.mirror.page import MirroredFile

log = logging.getLogger(__name__)

CHUNK: Final = 256 * 1024


class FetchFailed(Exception):  # noqa: N818 - an answer (502), the message says why
    """Upstream could not give this file now."""


@dataclass(frozen=True)
class Transfer:
    """A miss being served: `size` bytes announced, `body` yields them (short on failure).
    Whoever takes it must iterate the body or close it (the WSGI server does)."""

    size: int
    body: Iterator[bytes]


class Body:
    """A transfer's body for the WSGI server: `close()` releases the lock and the connection even
    when the server never started iterating (a client gone before the first byte), which a bare
    generator would leak: an unstarted generator's close() runs none of its code."""

    def __init__(self, body: Generator[bytes, None, None], release: Callable[[], object]) -> None:
        self._body, self._release, self._started = body, release, False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        self._started = True
        return next(self._body)

    def close(self) -> None:
        self._body.close()  # a started body's own `finally` releases everything
        if not self._started:
            self._release()


def close_follower(reader: BinaryIO, fd: int) -> None:
    reader.close()
    os.close(fd)


def release(fd: int, stream: Stream) -> None:
    stream.close()
    os.close(fd)


def content_length(stream: Stream) -> int | None:
    text = stream.headers.get("Content-Length", "")
    return int(text) if text.isdigit() else None


def lock_free(fd: int) -> bool:
    """Whether the lock on `fd`'s file is free now, i.e. no leader holds it (tested, not kept)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    fcntl.flock(fd, fcntl.LOCK_UN)
    return True


def create_part(part: Path) -> int | None:
    try:
        part.parent.mkdir(parents=True, exist_ok=True)
        return os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except OSError as error:
        log.warning("cannot write %s (%s): passing the file through unstored", part, error.strerror)
        return None


def write_chunk(out: int | None, part: Path, chunk: bytes, name: NormalizedName,
                item: MirroredFile) -> int | None:
    """Write on, or give up storing (the disk filled up): the client still gets verified bytes."""
    if out is None:
        return None
    try:
        view = memoryview(chunk)
        while view:
            view = view[os.write(out, view):]
    except OSError as error:
        os.close(out)
        part.unlink(missing_ok=True)
        level = logging.WARNING if error.errno in (errno.ENOSPC, errno.EDQUOT) else logging.ERROR
        journal(level, "stopped storing", name, item, "passthrough", error.strerror or str(error))
        return None
    return out


def journal(level: int, what: str, name: NormalizedName, item: MirroredFile, result: str,  # noqa: PLR0917
             detail: str, *, size: int = 0, began: float | None = None) -> None:
    ms = int((time.monotonic() - began) * 1000) if began is not None else 0
    fields = {"PROJECT": name, "FILE": item.filename, "SHA256": item.sha256, "RESULT": result}
    if size:
        fields |= {"BYTES": str(size), "MS": str(ms)}
    tail = f" ({size} bytes in {ms} ms)" if size else ""
    log.log(level, "mirror %s %s%s%s", what, item.filename, f" ({result}): {detail}" if detail else "",
            tail, extra=fields)
