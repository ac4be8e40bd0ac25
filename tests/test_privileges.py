"""Credentials handed over to the service user live in memory only: a process that reads them and is
then killed with SIGKILL (no atexit) leaves no copy of a secret on any file system.

The hand-over runs in a real child process; as root it also drops to `nobody`, who cannot read
the root-only originals, as `sudo pypi-insiders update` drops to the service user.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ConfigMaker
from tests.support.server_fixtures import service_env

SECRET = b"ghp_handed-over-secret-0123456789\n"
NOBODY = 65534

CHILD = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from pypi_insiders import config, privileges
    from pypi_insiders.fetch import credentials

    source, uid, config_file = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    privileges._hand_over_credentials(source, uid, uid)
    if os.geteuid() != uid:
        os.setgid(uid)
        os.setgroups([])
        os.setuid(uid)
    loaded = config.load(config_file)
    secret = credentials.read_secret(loaded, "token", "test")
    print(os.environ["CREDENTIALS_DIRECTORY"], secret.hex(), flush=True)
    sys.stdin.read()  # until killed
""")


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A TMPDIR both root and `nobody` can traverse (pytest's own is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="pypi-insiders-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def files_holding(root: Path, secret: bytes) -> list[Path]:
    found = []
    for directory, _dirs, names in os.walk(root):
        for name in names:
            path = Path(directory) / name
            if not path.is_symlink() and path.is_file() and secret.strip() in path.read_bytes():
                found.append(path)
    return found


@pytest.mark.parametrize("uid", [
    pytest.param(os.getuid(), id="same-user"),
    pytest.param(NOBODY, id="root-to-nobody",
                 marks=pytest.mark.skipif(os.geteuid() != 0, reason="dropping to nobody needs root")),
])
def test_privileges_handed_over_secret_leaves_no_copy_after_sigkill(
        make_config: ConfigMaker, shared_tmp: Path, uid: int) -> None:
    source = shared_tmp / "credentials"
    source.mkdir(mode=0o700)
    (source / "token").write_bytes(SECRET)
    (source / "token").chmod(0o600)
    config_file = make_config()
    config_file.chmod(0o644)
    for parent in (config_file.parent, *config_file.parents):
        if parent == Path(tempfile.gettempdir()):
            break
        parent.chmod(parent.stat().st_mode | 0o005)  # `nobody` reads the test config
    env = service_env({"TMPDIR": str(shared_tmp), "PYTHONPATH": str(Path(__file__).parent.parent)})
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(source), str(uid), str(config_file)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=env, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line, child.stderr.read() if child.stderr else ""
        staging, read = line.split()
        assert bytes.fromhex(read) == SECRET  # the service user read it through the hand-over
        assert Path(staging).parent == shared_tmp
        assert files_holding(shared_tmp, SECRET) == [source / "token"]  # only the original
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    leftovers = sorted(Path(staging).iterdir())
    assert [p.name for p in leftovers] == ["token"]  # atexit never ran: the link stayed ...
    # ... naming a descriptor of whoever reads it: the dead process's memory file is gone
    assert all(p.is_symlink() and str(p.readlink()).startswith("/proc/self/fd/") for p in leftovers)
    assert files_holding(shared_tmp, SECRET) == [source / "token"]
