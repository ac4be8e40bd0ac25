"""sd.py: READY=1 and friends reach whoever set NOTIFY_SOCKET, python3-systemd or not."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tests.support.git_fixtures import cli_env

_SEND = """
import sys
if sys.argv[1] == "without":
    sys.modules["systemd"] = None  # a pip install without the optional systemd-python
from pypi_insiders import sd
print(sd._daemon is None, sd.notify(READY=1, STATUS="serving"))
"""


@pytest.mark.parametrize("systemd_python", ["with", "without"])
def test_sd_notify_reaches_an_abstract_socket(systemd_python: str) -> None:
    """What `server start` listens on outside systemd (service/background.py)."""
    name = f"pypi-insiders-test-{os.getpid()}-{systemd_python}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        listener.settimeout(30)
        result = subprocess.run([sys.executable, "-c", _SEND, systemd_python], capture_output=True, text=True,
                                timeout=60, env={**cli_env(), "NOTIFY_SOCKET": "@" + name}, check=False)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [str(systemd_python == "without"), "True"]
        assert listener.recv(4096).decode().splitlines() == ["READY=1", "STATUS=serving"]


def test_sd_notify_with_nobody_listening_is_no_error() -> None:
    """A `server start` that went away after READY=1: later STATUS lines must not kill the index."""
    result = subprocess.run([sys.executable, "-c", _SEND, "with"], capture_output=True, text=True, timeout=60,
                            env={**cli_env(), "NOTIFY_SOCKET": f"@pypi-insiders-nobody-{os.getpid()}"},
                            check=False)
    assert (result.returncode, result.stdout.split()) == (0, ["False", "False"])
