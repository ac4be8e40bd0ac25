"""What a forked worker runs: the same app on the shared socket, reloading on SIGHUP.

A worker never generates, watches or talks to systemd: the parent does, and signals it.
"""

from __future__ import annotations

import socket

from pypi_insiders.config import Config
from pypi_insiders.service.server import create_server
from pypi_insiders.service.serving import Serving, install_signals, reloader, thread


def serve_worker(config: Config, config_arg: str | None, file_config: Config, sock: socket.socket) -> None:
    worker = Serving(config, config_arg, file_config=file_config)
    install_signals(worker)
    thread(reloader, worker)
    try:
        worker.server = create_server(worker.app, worker.config, sock)
        worker.run()
    except SystemExit:  # a SIGTERM before waitress's loop began
        pass
    finally:
        worker.stop()
