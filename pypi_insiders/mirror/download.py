"""Files fetched once across threads and processes, verified before a client can hold them whole.

The first request for a file takes its flock (`locks/<sha>.lock`) and becomes the leader: it
streams upstream's bytes into `tmp/<sha>.part` and to its client at once, hashing as it goes,
and **holds back the last chunk** until the byte count equals the page's size and the sha256
matches. Only then is the file linked into `files/` and the last chunk sent. A wrong hash, a
short or an overlong body: the client gets a short body (pip and uv reject it), nothing is
stored, one ERROR line says what differed. Requests that find the lock taken are followers:
they tail the `.part` file with the same hold-back and finish once the verified file exists.
A leader killed mid-way (even by SIGKILL) loses its flock with its life; its `.part` is never
served, because only a verified link in `files/` ends a follower's wait.

Memory stays flat: one chunk in flight and one held back, however large the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import BinaryIO, Final
from urllib.parse import urlsplit

from packaging.utils import NormalizedName

from pypi_insiders.config import UpstreamConfig
from pypi_insiders.http_client import Credentials, HttpClient, HttpError, Stream, split_credentials
from pypi_insiders.mirror.layout import METADATA, MirrorLayout
from pypi_insiders.mirror.limits import Deadline, refused_midway, too_large
from pypi_insiders.mirror.metadata_files import fetch_metadata
from pypi_insiders.mirror.page import MirroredFile
from pypi_insiders.mirror.stats import MirrorStats
from pypi_insiders.mirror.sweep import ask_for_sweep
from pypi_insiders.mirror.transfer import (
    CHUNK,
    Body,
    FetchFailed,
    Transfer,
    close_follower,
    content_length,
    create_part,
    journal,
    lock_free,
    release,
    write_chunk,
)

log = logging.getLogger(__name__)

_FOLLOW_POLL: Final = 0.02  # seconds between looks at a growing .part file
_RETRY_AFTER: Final = 5.0
_TOUCH_EVERY: Final = 3600.0
_TOUCHED_MAX: Final = 65536  # the LRU clock: a hit refreshes a file's mtime at most this often


class Downloads:
    def __init__(self, layout: MirrorLayout, settings: UpstreamConfig, client: HttpClient,
                 stats: MirrorStats) -> None:
        self.layout, self.settings, self.client, self.stats = layout, settings, client, stats
        self._touched: dict[str, float] = {}
        # File host (scheme, netloc) -> when it last failed to answer, and how: for _RETRY_AFTER
        # seconds a miss there is a 502 at once.
        self._failures: dict[tuple[str, str], tuple[float, str]] = {}
        self.on_stored: list[Callable[[], object]] = []  # run after a file is stored (eviction)

    # ------------------------------------------------------------------ hits

    def on_disk(self, item: MirroredFile, suffix: str = "") -> Path | None:
        path = self.layout.file(item.sha256, item.filename + suffix)
        if not path.is_file():
            return None
        now = time.time()
        if now - self._touched.get(item.sha256, 0.0) > _TOUCH_EVERY:
            if len(self._touched) > _TOUCHED_MAX:
                self._touched.clear()  # bounded: at worst a few extra utime calls
            self._touched[item.sha256] = now
            with contextlib.suppress(OSError):
                os.utime(path)
        return path

    # ------------------------------------------------------------------ misses

    def fetch(self, name: NormalizedName, item: MirroredFile) -> Path | Transfer:
        """The stored file (someone finished it meanwhile) or a transfer to send."""
        self._refuse_if_too_large(name, item, item.size)
        self.layout.locks.mkdir(parents=True, exist_ok=True)
        lock = self.layout.lock(item.sha256)
        while True:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return self._follow(fd, name, item)
            except BaseException:
                os.close(fd)
                raise
            if _same_file(fd, lock):
                return self._lead(fd, name, item)
            os.close(fd)  # the sweep removed this lock file while we opened it: take the new one

    def too_large(self, size: int | None) -> str | None:
        return too_large(self.settings, size)

    def _refuse_if_too_large(self, name: NormalizedName, item: MirroredFile, size: int | None) -> None:
        refused = too_large(self.settings, size)
        if refused is not None:
            journal(logging.WARNING, "refused", name, item, "toolarge", refused)
            raise FetchFailed(refused)

    def _lead(self, fd: int, name: NormalizedName, item: MirroredFile) -> Path | Transfer:
        try:
            final = self.layout.file(item.sha256, item.filename)
            if final.is_file():
                os.close(fd)
                return final
            part = self.layout.part(item.sha256)
            part.unlink(missing_ok=True)  # a dead leader's: its flock went with it
            stream = self._open(name, item)
        except BaseException:
            os.close(fd)
            raise
        size = item.size if item.size is not None else content_length(stream)
        if size is None:  # the leader's body releases the lock
            return self._whole_then_serve(fd, name, item, stream)
        keep = self._room_for(size)
        if not keep:
            ask_for_sweep(self.layout)  # the parent evicts: the next file may be kept again
        body = self._leader_body(fd, name, item, stream, size, keep=keep)
        return Transfer(size, Body(body, lambda: release(fd, stream)))

    def _open(self, name: NormalizedName, item: MirroredFile) -> Stream:
        if self.settings.offline:
            msg = "not cached here (upstream.offline)"
            raise FetchFailed(msg)
        origin = urlsplit(item.url)[:2]
        failed = self._failures.get(origin)
        if failed is not None and time.monotonic() - failed[0] < _RETRY_AFTER:
            raise FetchFailed(failed[1])  # queued requests do not each wait out the timeout
        try:
            stream = self.client.stream(item.url, timeout=self.settings.timeout, auth=self._auth(item.url))
        except HttpError as error:
            self.stats.error(str(error))
            self._failures[origin] = (time.monotonic(), str(error))
            raise FetchFailed(str(error)) from None
        self._failures.pop(origin, None)
        declared = content_length(stream)
        problem = (f"{stream.url} answered {stream.status}" if stream.status != 200 else
                   f"{stream.url}: Content-Length {declared}, the page says {item.size}"
                   if declared is not None and item.size is not None and declared != item.size else "")
        if problem:
            stream.close()
            self.stats.error(problem)
            journal(logging.ERROR if stream.status == 200 else logging.WARNING, "not fetched",
                     name, item, "mismatch" if stream.status == 200 else "failed", problem)
            raise FetchFailed(problem)
        try:
            self._refuse_if_too_large(name, item, declared)
        except FetchFailed:
            stream.close()
            raise
        return stream

    def _auth(self, url: str) -> Credentials | None:
        """Upstream's own credentials, only to upstream's own origin (never a file host elsewhere)."""
        base, credentials = split_credentials(self.settings.url or "")
        same = urlsplit(base)[:2] == urlsplit(url)[:2]
        return credentials if same else None

    def _room_for(self, size: int) -> bool:
        try:
            free = shutil.disk_usage(self.layout.tmp).free
        except OSError:
            return False
        return free - size >= self.settings.min_free

    def _leader_body(self, fd: int | None, name: NormalizedName, item: MirroredFile,  # noqa: PLR0912
                     stream: Stream, size: int | None, *, keep: bool) -> Generator[bytes, None, None]:
        """One transfer's states, top to bottom: stream and hash, verify, publish, release."""
        began = time.monotonic()
        part = self.layout.part(item.sha256)
        out = create_part(part) if keep else None
        digest, got, held, ok, detached = hashlib.sha256(), 0, b"", False, False
        deadline = Deadline(self.settings.file_timeout, stream)
        try:
            try:
                for chunk in stream.chunks(CHUNK):
                    got += len(chunk)
                    refused = refused_midway(self.settings, got, size, deadline)
                    if refused is not None:
                        journal(logging.ERROR, "refused", name, item, *refused)
                        return
                    digest.update(chunk)
                    out = self._write(out, part, chunk, name, item)
                    if held and not detached:
                        try:
                            yield held
                        except GeneratorExit:
                            detached = True  # the client left; finish for the followers
                    held = chunk
            except HttpError as error:
                journal(logging.ERROR, "refused", name, item, *(
                    ("timeout", deadline.reason(got)) if deadline.passed() else ("truncated", str(error))))
                return
            if (size is not None and got != size) or digest.hexdigest() != item.sha256:
                result = "truncated" if size is not None and got < size else "mismatch"
                journal(logging.ERROR, "refused", name, item, result,
                         f"got {got} bytes with sha256 {digest.hexdigest()}, the page says {size} "
                         f"bytes with sha256 {item.sha256}")
                return
            self.stats.add(misses=1, bytes_upstream=got)
            if out is not None:
                self._publish(out, part, item)
                out = None
                journal(logging.INFO, "stored", name, item, "stored", "", size=got, began=began)
            else:
                journal(logging.WARNING, "served without storing (min_free)", name, item,
                         "passthrough", "", size=got, began=began)
            ok = True
            if not detached:
                yield held
        finally:
            deadline.cancel()
            stream.close()
            if out is not None:
                os.close(out)
            if not ok and keep:
                part.unlink(missing_ok=True)
            if ok and keep:
                for hook in self.on_stored:  # under our lock: eviction passes this file over
                    hook()
            if fd is not None:
                os.close(fd)

    def _write(self, out: int | None, part: Path, chunk: bytes, name: NormalizedName,
               item: MirroredFile) -> int | None:
        """Write on; a disk that fills up mid-file asks the parent for a sweep."""
        kept = write_chunk(out, part, chunk, name, item)
        if out is not None and kept is None:
            ask_for_sweep(self.layout)
        return kept

    def _publish(self, out: int, part: Path, item: MirroredFile) -> None:
        os.fsync(out)
        os.close(out)
        final = self.layout.file(item.sha256, item.filename)
        final.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.link(part, final)  # the same inode: a follower reading the .part reads the file
        part.unlink(missing_ok=True)

    def _whole_then_serve(self, fd: int, name: NormalizedName, item: MirroredFile,
                          stream: Stream) -> Path | Transfer:
        """No size to announce: download and verify first, then serve from disk."""
        for _chunk in self._leader_body(fd, name, item, stream, None, keep=True):
            pass
        final = self.layout.file(item.sha256, item.filename)
        if final.is_file():
            return final
        msg = "upstream's file was refused (the log says why)"
        raise FetchFailed(msg)

    def _follow(self, fd: int, name: NormalizedName, item: MirroredFile) -> Path | Transfer:
        """Another request is fetching: read its .part as it grows, or its finished file."""
        final = self.layout.file(item.sha256, item.filename)
        part = self.layout.part(item.sha256)
        deadline = time.monotonic() + self.settings.timeout
        reader = None
        try:
            while reader is None:
                if final.is_file():
                    os.close(fd)
                    return final
                if item.size is not None:
                    with contextlib.suppress(FileNotFoundError):
                        reader = open(part, "rb")  # noqa: SIM115,PTH123 - closed by the body
                        break
                if lock_free(fd):  # the leader ended without a file: try it ourselves
                    os.close(fd)
                    return self.fetch(name, item)
                if time.monotonic() > deadline:  # a leader passing bytes through unstored
                    os.close(fd)
                    return self._passthrough(name, item)
                time.sleep(_FOLLOW_POLL)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        assert item.size is not None  # noqa: S101 - only then is a .part read
        body = self._follower_body(fd, reader, final, item.size)
        return Transfer(item.size, Body(body, lambda: close_follower(reader, fd)))

    def _passthrough(self, name: NormalizedName, item: MirroredFile) -> Transfer:
        stream = self._open(name, item)
        size = item.size if item.size is not None else content_length(stream)
        if size is None:
            stream.close()
            msg = "the file is being fetched by another request; try again"
            raise FetchFailed(msg)
        body = self._leader_body(None, name, item, stream, size, keep=False)
        return Transfer(size, Body(body, stream.close))

    def _follower_body(self, fd: int, stream: BinaryIO, final: Path,
                       size: int) -> Generator[bytes, None, None]:
        sent, held = 0, b""
        stalled = time.monotonic() + self.settings.timeout
        try:
            while True:
                chunk = stream.read(CHUNK)
                if chunk:
                    if held:
                        yield held
                        sent += len(held)
                    held = chunk
                    if sent + len(held) > size:
                        return
                    stalled = time.monotonic() + self.settings.timeout
                    continue
                done = final.is_file()
                if sent + len(held) == size and done:
                    yield held  # the leader verified and published these very bytes (one inode)
                    return
                if done or lock_free(fd) or time.monotonic() > stalled:
                    # At the end of a .part that will grow no more: the leader failed (a later
                    # leader writes another .part), or upstream stalled. A short body.
                    return
                time.sleep(_FOLLOW_POLL)
        finally:
            stream.close()
            os.close(fd)

    def metadata(self, name: NormalizedName, item: MirroredFile) -> Path:
        """Its `.metadata` file, with upstream's credentials when it lives at upstream's origin."""
        url = item.url + METADATA
        return fetch_metadata(self.layout, self.settings, self.client, name=name, item=item,
                              auth=self._auth(url))


def _same_file(fd: int, path: Path) -> bool:
    """Whether `fd` is still the file at `path` (the sweep deletes old, free lock files)."""
    try:
        return os.fstat(fd).st_ino == path.stat().st_ino
    except OSError:
        return False
