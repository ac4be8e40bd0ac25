"""Commands that write the service's data drop root privileges to the service user first.

An administrator runs `sudo pypi-insiders update` by habit. Done as root, it would leave
root-owned mirrors, state and pages that the services, running as `pypi-insiders`, can no
longer replace. So when root runs such a command against data the service user owns, the
command becomes that user, as `runuser -u pypi-insiders` would.
"""

from __future__ import annotations

import logging
import os
import pwd
from pathlib import Path

from pypi_insiders.errors import UsageError

log = logging.getLogger(__name__)

SERVICE_USER = "pypi-insiders"


def become_data_owner(data_dir: Path) -> None:
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
    try:
        os.initgroups(SERVICE_USER, service.pw_gid)
        os.setgid(service.pw_gid)
        os.setuid(service.pw_uid)
    except OSError as error:
        raise UsageError(f"cannot switch to user {SERVICE_USER}: {error.strerror}") from None
    os.environ["HOME"] = service.pw_dir
    log.debug("running as %s, the owner of %s", SERVICE_USER, data_dir)
