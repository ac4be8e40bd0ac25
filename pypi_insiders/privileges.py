"""Commands that write the service's data drop root privileges to the service user first.

An administrator runs `sudo pypi-insiders update` by habit. Done as root, it would leave
root-owned mirrors, state and pages that the services, running as `pypi-insiders`, can no
longer replace. So when root runs such a command against data the service user owns, the
command becomes that user, as `runuser -u pypi-insiders` would. Credentials only root may
read are handed over the way the unit's LoadCredential= does: copied into a private
directory owned by the service user, named by $CREDENTIALS_DIRECTORY, removed at exit.
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
    """Copy root-only credential files where only the service user can read them, for this run."""
    try:
        files = [path for path in source.iterdir() if path.is_file() and not path.name.startswith(".")]
    except OSError:
        return  # no credentials directory: repositories that need one report it themselves
    if not files:
        return
    staging = Path(tempfile.mkdtemp(prefix="pypi-insiders-credentials-"))
    atexit.register(shutil.rmtree, staging, ignore_errors=True)
    for path in files:
        copy = staging / path.name
        shutil.copyfile(path, copy)
        copy.chmod(0o400)
        os.chown(copy, uid, gid)
    os.chown(staging, uid, gid)
    os.environ["CREDENTIALS_DIRECTORY"] = str(staging)
