"""Commands that write the service's data drop root privileges to the service user first.

An administrator runs `sudo pypi-insiders update` by habit. Done as root, it would leave
root-owned mirrors, state and pages that the services, running as `pypi-insiders`, can no
longer replace. So when root runs such a command against data the service user owns, the
command becomes that user, as `runuser -u pypi-insiders` would. Credentials only root may
read are handed over the way the unit's LoadCredential= does, through $CREDENTIALS_DIRECTORY,
but without a copy on any file system: each secret is a memory-only file (memfd) that dies
with the process, SIGKILL included. The directory named holds only symlinks to them.
"""

from __future__ import annotations

import atexit
import logging
import os
import pwd
import shutil
import tempfile
from pathlib import Path

from pypi_insiders.errors import UsageError

log = logging.getLogger(__name__)

SERVICE_USER = "pypi-insiders"


def become_data_owner(data_dir: Path, credentials_dir: Path | None = None) -> None:
    """As root, switch to the owner of `data_dir` when that is the service user; else do nothing."""
    if os.geteuid() != 0:
        return
    try:
        owner = data_dir.stat().st_uid
        service = pwd.getpwnam(SERVICE_USER)
    except (FileNotFoundError, KeyError):
        return  # no service layout here (a developer's machine): root's own data is fine
    if owner != service.pw_uid:
        return
    if credentials_dir is not None and not os.environ.get("CREDENTIALS_DIRECTORY"):
        _hand_over_credentials(credentials_dir, service.pw_uid, service.pw_gid)
    try:
        os.initgroups(SERVICE_USER, service.pw_gid)
        os.setgid(service.pw_gid)
        os.setuid(service.pw_uid)
    except OSError as error:
        msg = f"cannot switch to user {SERVICE_USER}: {error.strerror}"
        raise UsageError(msg) from None
    os.environ["HOME"] = service.pw_dir
    log.debug("running as %s, the owner of %s", SERVICE_USER, data_dir)


def _hand_over_credentials(source: Path, uid: int, gid: int) -> None:
    """Make root-only credential files readable by the service user, for this run only.

    A copy in /tmp would outlive a process killed with SIGKILL (atexit never runs). A memfd is
    memory owned by this process; `<dir>/<name>` -> `/proc/self/fd/<n>` names it for the
    lookup in `fetch.credentials`, and /proc/self/fd is readable by its own process only. What
    a kill leaves in /tmp is a directory of dangling links, no secret.
    """
    try:
        files = [path for path in source.iterdir() if path.is_file() and not path.name.startswith(".")]
    except OSError:
        return  # no credentials directory: repositories that need one report it themselves
    if not files:
        return
    staging = Path(tempfile.mkdtemp(prefix="pypi-insiders-credentials-"))
    atexit.register(shutil.rmtree, staging, ignore_errors=True)
    for path in files:
        fd = _memory_file(path.name, path.read_bytes(), uid, gid)
        (staging / path.name).symlink_to(f"/proc/self/fd/{fd}")
    os.chown(staging, uid, gid)
    os.environ["CREDENTIALS_DIRECTORY"] = str(staging)


def _memory_file(name: str, data: bytes, uid: int, gid: int) -> int:
    """A file only in memory, private to `uid`, open for the life of the process (never closed).

    MFD_CLOEXEC: the programs the fetch runs (git's ssh, builds) do not inherit it.
    """
    fd = os.memfd_create(f"pypi-insiders-credential-{name}", os.MFD_CLOEXEC)
    with open(fd, "wb", closefd=False) as out:
        out.write(data)
    os.fchmod(fd, 0o400)
    os.fchown(fd, uid, gid)
    return fd
