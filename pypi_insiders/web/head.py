"""HEAD answers that keep the connection open, on waitress 2.1.

waitress 2.1 does not know that a HEAD answer has no body: it sends whatever body the app
returns, and when the app (rightly) returns none, it counts the missing bytes against the
Content-Length, decides the answer was cut short and closes the connection, without saying
so in a `Connection: close` header. A client that reuses the connection (pip and uv keep them
alive) then gets a reset. Returning the body would make waitress send it, and dropping the
Content-Length would make the answer differ from GET's (PEP 691 clients read it from HEAD).

So the task that serves a request is ours: for HEAD it ends the answer with its headers and
keeps the connection unless the client or the protocol version asked to close it. Installed
per server instance (`keep_head_connections`), never by patching waitress's classes.
"""

from __future__ import annotations

from typing import Any

from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import WSGITask


class _HeadTask(WSGITask):
    @property
    def _head(self) -> bool:
        request: Any = self.request  # types-waitress calls it an Error; it is the parsed request
        return bool(request.command == "HEAD")

    def write(self, data: bytes) -> None:
        if data and self._head:  # counted as sent, never sent
            if not self.wrote_header:
                super().write(b"")
            self.content_bytes_written += len(data)
            return
        super().write(data)

    def finish(self) -> None:
        if self._head:
            if not self.wrote_header:
                # Set by execute()'s "too few bytes for Content-Length" check, which counted the
                # body a HEAD answer never has; the headers decide again below, from the client's
                # Connection header and HTTP version.
                self.close_on_finish = False
                self.write(b"")  # the headers, exactly as for GET
            self.chunked_response = False  # a HEAD answer ends with its headers: no last chunk
        super().finish()


class _HeadChannel(HTTPChannel):
    task_class = _HeadTask


def keep_head_connections(server: Any) -> None:  # noqa: ANN401 - waitress is untyped
    """Every listening socket of `server` (as `create_server` returns it) serves HEAD so."""
    listeners = [server] if isinstance(server, BaseWSGIServer) else [
        dispatcher for dispatcher in server.map.values() if isinstance(dispatcher, BaseWSGIServer)]
    for listener in listeners:
        listener.channel_class = _HeadChannel
