"""The waitress server every process runs, and how to find and probe where it listens."""

from __future__ import annotations

import socket
from typing import Any, Protocol

from waitress.server import create_server as _waitress_server

from pypi_insiders.config import Config
from pypi_insiders.web import hooks, upload
from pypi_insiders.web.app import IndexApp
from pypi_insiders.web.body_limit import limit_bodies
from pypi_insiders.web.head import keep_head_connections

_BODY_SLACK = 1024 * 1024  # multipart framing around the largest allowed upload


class Server(Protocol):
    """What we use of a waitress server (waitress is untyped)."""

    def run(self) -> None: ...

    def close(self) -> None: ...


def create_server(app: IndexApp, config: Config, sock: socket.socket | None = None) -> Server:
    """A waitress server on the configured address (port 0 picks a free one) or on `sock`."""
    where: dict[str, Any] = ({"sockets": [sock]} if sock is not None
                             else {"host": config.server.host, "port": config.server.port})
    # The cap on every body (uploads may be enabled by a reload); `limit_bodies` holds all but
    # authenticated uploads to a small one.
    server = _waitress_server(
        app, threads=config.server.threads, ident="pypi-insiders", asyncore_use_poll=True,
        # Proxy headers are the app's (web/forwarded.py): it alone knows the peer was the proxy.
        connection_limit=1000, clear_untrusted_proxy_headers=False,
        max_request_body_size=config.upload.max_size + _BODY_SLACK, **where)
    keep_head_connections(server)
    # Webhook deliveries up to [webhooks] max_body, when webhooks are on at start (a reload that
    # turns them on or raises max_body keeps 64 KiB at this layer until a restart).
    limit_bodies(server, upload.PATHS,
                 (hooks.HOOKS_URL, config.webhooks.max_body if config.webhooks.enabled else 0))
    served: Server = server
    return served


def listening(server: Server) -> list[tuple[str, int]]:
    """Every (host, port) actually bound; with port 0 this is where to find us."""
    if hasattr(server, "effective_listen"):
        return [(str(h), int(p)) for h, p in server.effective_listen]
    return [(str(getattr(server, "effective_host")), int(getattr(server, "effective_port")))]  # noqa: B009


def url_of(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def answers(server: Server, timeout: float = 5.0) -> bool:
    """Whether our own socket answers an HTTP request: the watchdog's proof of life."""
    host, port = listening(server)[0]
    if host in ("0.0.0.0", "::"):  # noqa: S104 - bound everywhere: ask over loopback
        host = "127.0.0.1"
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(b"HEAD /simple/ HTTP/1.0\r\nHost: localhost\r\n\r\n")
            return conn.recv(12).startswith(b"HTTP/1.")
    except OSError:
        return False
