"""How often a directory is opened for reading, from the kernel (inotify): proof that nothing
walks a tree on the request path, without mocking the code that walks it.

Only opens of the watched directory itself are counted (a scan opens it once). Closes are
watched too: the kernel merges an event with an identical unread one, and a close between two
opens keeps them apart.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
from pathlib import Path
from types import TracebackType

_IN_OPEN = 0x20
_IN_CLOSE_NOWRITE = 0x10
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name


class DirectoryOpens:
    def __init__(self, path: Path) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if libc.inotify_add_watch(self._fd, os.fsencode(path), _IN_OPEN | _IN_CLOSE_NOWRITE) < 0:
            error = ctypes.get_errno()
            os.close(self._fd)
            raise OSError(error, f"inotify_add_watch {path}")
        self._opens = 0

    def count(self) -> int:
        """Opens of the directory itself since the watch began."""
        while True:
            try:
                data = os.read(self._fd, 64 * 1024)
            except BlockingIOError:
                return self._opens
            offset = 0
            while offset < len(data):
                _wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                if mask & _IN_OPEN and length == 0:
                    self._opens += 1
                offset += _EVENT.size + length

    def __enter__(self) -> DirectoryOpens:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        os.close(self._fd)
