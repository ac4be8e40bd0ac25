"""A real OpenSSH server on loopback, for fetching over SSH the way a private GitHub repository is.

sshd runs in the foreground from a config of our own (its own host key, one authorized key, no
passwords, no PAM) and logs in as the user running the tests, whose shell then runs
`git-upload-pack`, exactly what a git host's SSH service runs. It is stopped by its PID.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# Debian's sshd unpacked by .ci/deps from its package, never installed: installing openssh-server
# would enable a system ssh.service listening on port 22 from the next boot.
SSHD = Path(__file__).resolve().parents[2] / ".ci/cache/openssh-server/usr/sbin/sshd"


@dataclass(frozen=True)
class SshServer:
    port: int
    user: str
    host_key_line: str  # the server's public host key, as known_hosts would hold it

    def url(self, path: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{path}"


def missing_tools() -> str | None:
    """What this machine lacks to run the server; .ci/deps provides both."""
    if not SSHD.exists():
        return f"{SSHD} (Debian's openssh-server, unpacked by .ci/deps)"
    if shutil.which("ssh-keygen") is None or shutil.which("ssh") is None:
        return "ssh and ssh-keygen (Debian's openssh-client)"
    return None


def keypair(directory: Path, name: str) -> tuple[Path, str]:
    """(private key file, public key line) of a fresh ed25519 key without a passphrase."""
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
                   check=True, timeout=30)
    return key, (directory / f"{name}.pub").read_text().strip()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            return connection.recv(4).startswith(b"SSH-")
    except OSError:
        return False


@contextmanager
def ssh_server(directory: Path, authorized_keys: list[str], port: int | None = None) -> Iterator[SshServer]:
    """A server with a new host key each time; `port` to stand in for a host whose key changed."""
    directory.mkdir(parents=True, exist_ok=True)
    host_key, host_public = keypair(directory, "host_key")
    (directory / "authorized_keys").write_text("".join(f"{line}\n" for line in authorized_keys))
    port = port or _free_port()
    config = directory / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {host_key}\n"
        f"AuthorizedKeysFile {directory / 'authorized_keys'}\nPidFile {directory / 'sshd.pid'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nLogLevel VERBOSE\n")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    log = (directory / "sshd.log").open("wb")
    process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 15
        while not _accepting(port):
            if process.poll() is not None or time.monotonic() > deadline:
                msg = f"sshd did not start: {(directory / 'sshd.log').read_text()}"
                raise RuntimeError(msg)
            time.sleep(0.05)
        algorithm, key = host_public.split()[:2]
        yield SshServer(port, getpass.getuser(), f"[127.0.0.1]:{port} {algorithm} {key}")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()
