"""Where an instance keeps each piece when its config does not say: one tree, two flavours.

The system layout (/etc/pypi-insiders, /var/lib/pypi-insiders, /var/cache/pypi-insiders) belongs
to the Debian package: it is used when the config in effect is the package's conffile, or by its
service user. Everything else, root without that file included, gets the XDG layout of the user
running it, so trying the index never touches (or is served from) the system's state.

The config-side pieces (repos.d/, users, credentials/) live beside the config file in effect,
so `repos add` and `serve` with the same config always agree on them. A store named on the
command line gets an instance directory of its own under the data and cache directories.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import re
from dataclasses import dataclass
from pathlib import Path

from pypi_insiders.privileges import SERVICE_USER

SYSTEM_CONFIG = Path("/etc/pypi-insiders/config.toml")
CONFIG_ENV = "PYPI_INSIDERS_CONFIG"
CONFIG_NAME = "config.toml"


@dataclass(frozen=True)
class ConfigChoice:
    """The config file to read (None: the embedded default), whether it must exist, and why."""

    path: Path | None
    required: bool
    source: str


@dataclass(frozen=True, kw_only=True)
class Locations:
    """The default locations for one config: its directory, the data and cache directories."""

    config_dir: Path
    data: Path
    cache: Path
    name: str  # "system" or "per-user", shown by check-config as "(system layout)"


def _account() -> str:
    """"root", "service" (the units' user) or "user"."""
    if os.geteuid() == 0:
        return "root"
    try:
        return "service" if pwd.getpwuid(os.geteuid()).pw_name == SERVICE_USER else "user"
    except KeyError:  # a uid without a passwd entry (a container, a dynamic user)
        return "user"


def in_service_group() -> bool:
    """Whether this process is in the service's group, which may read the system's state."""
    try:
        gid = grp.getgrnam(SERVICE_USER).gr_gid
    except KeyError:
        return False
    return gid == os.getegid() or gid in os.getgroups()


def reads_system_as_group(config_file: Path | None) -> bool:
    """A group member reading the system's config and state, which only the service user writes."""
    return (config_file is not None and _account() == "user" and _same_file(config_file, SYSTEM_CONFIG)
            and in_service_group())


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var, "")
    return (Path(value) if value.startswith("/") else Path.home() / fallback) / "pypi-insiders"


def user_config_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config")


def choose_config(explicit: str | None, *, reading: bool = False) -> ConfigChoice:
    """-c, then $PYPI_INSIDERS_CONFIG (both must exist), then the first file found of:
    the system file for root and the service user, the per-user file for anyone but the latter.

    `reading`: for the commands that only read (`status`, `check-config`), a member of the
    service's group, who may read the system's state, gets the system file after the per-user
    one, instead of an empty per-user state beside the system timer's next run.
    """
    if explicit:
        return ConfigChoice(Path(explicit), required=True, source="--config")
    from_env = os.environ.get(CONFIG_ENV, "")
    if from_env:
        return ConfigChoice(Path(from_env), required=True, source=f"${CONFIG_ENV}")
    account = _account()
    candidates: list[tuple[Path, str]] = []
    if account in ("root", "service"):
        candidates.append((SYSTEM_CONFIG, "the system file"))
    if account != "service":
        candidates.append((user_config_dir() / CONFIG_NAME, "the per-user file"))
    if reading and account == "user" and in_service_group():
        candidates.append((SYSTEM_CONFIG, f"the system file, read as a member of the group {SERVICE_USER}"))
    for path, source in candidates:
        if path.exists():
            return ConfigChoice(path, required=False, source=source)
    looked = ", ".join(str(path) for path, _ in candidates)
    return ConfigChoice(None, required=False, source=f"embedded default (no {looked})")


def locations_for(config_file: Path | None) -> Locations:
    """The system layout for the package's conffile or its service user, the XDG one otherwise."""
    system_file = config_file is not None and _same_file(config_file, SYSTEM_CONFIG)
    if system_file or _account() == "service":
        return Locations(config_dir=SYSTEM_CONFIG.parent, data=Path("/var/lib/pypi-insiders"),
                         cache=Path("/var/cache/pypi-insiders"), name="system")
    config_dir = config_file.parent if config_file is not None else user_config_dir()
    return Locations(config_dir=config_dir, data=_xdg("XDG_DATA_HOME", ".local/share"),
                     cache=_xdg("XDG_CACHE_HOME", ".cache"), name="per-user")


def _same_file(path: Path, other: Path) -> bool:
    try:
        return path.absolute() == other or (other.exists() and path.samefile(other))
    except OSError:
        return False


def instance_name(store: Path) -> str:
    """A directory name of its own for a store: readable (its last component) and unique (a hash)."""
    resolved = str(store.expanduser().resolve())
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(resolved).name or "root").strip(".") or "store"
    return f"{readable[:40]}-{hashlib.sha256(resolved.encode()).hexdigest()[:12]}"
