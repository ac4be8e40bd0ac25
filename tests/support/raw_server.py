"""A misbehaving HTTP server on a loopback socket: it answers each request with the bytes a test
scripts, then closes, so a test can send what no well-behaved server would (a body cut short,
a broken chunk, garbage, silence). Nothing of ours is reused in it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

Handler = Callable[[bytes], bytes | None]  # request head -> raw reply; None: say nothing, hang up


@dataclass
class RawServer:
    """Serves one connection at a time until stopped; every request head is kept in `requests`."""

    handler: Handler
    requests: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/"
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="raw-server", daemon=True)

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)
        self._sock.close()
        assert not self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _addr = self._sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                head = self._read_head(conn)
                if head is None:
                    continue
                self.requests.append(head)
                reply = self.handler(head)
                if reply:
                    conn.sendall(reply)

    @staticmethod
    def _read_head(conn: socket.socket) -> bytes | None:
        data = b""
        while b"\r\n\r\n" not in data:
            try:
                chunk = conn.recv(65536)
            except OSError:
                return None
            if not chunk:
                return None
            data += chunk
        return data.split(b"\r\n\r\n", 1)[0]


def reply(status: str, body: bytes, content_type: str = "text/html", *, length: int | None = None,
          extra: str = "") -> bytes:
    """A raw HTTP/1.1 answer that closes the connection; `length` may lie about the body."""
    declared = len(body) if length is None else length
    return (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {declared}\r\n"
            f"{extra}Connection: close\r\n\r\n").encode() + body
