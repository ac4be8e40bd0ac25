"""The index pip on this host is configured to use: the default upstream.

An administrator who pointed pip at a mirror expects names we do not hold to go to that
mirror too, so we read pip's own sources in pip's own order rather than naming a registry.
pip's configuration API is internal, so the files are read here; pip is asked only for its
built-in default, and only when nothing is configured. Without pip installed (the Debian
package does not depend on it: its recommends would bring a compiler), the default is read
from the pip wheel that ensurepip installs into new venvs, which the builds need anyway.

A source that names this index itself is skipped, with a note naming it, for the next one in
pip's order: the original tool's README has `PIP_INDEX_URL` point at the index, and taking that
as upstream would send every name we do not hold round in a loop of redirects.
"""

from __future__ import annotations

import configparser
import importlib.util
import ipaddress
import os
import socket
import sys
import zipimport
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

from pypi_insiders.http_client import display_url

Listen = tuple[str, int]  # the index's own (host, port), as `[server] listen` says
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class FoundIndex:
    url: str | None
    source: str
    skipped: tuple[str, ...] = ()  # sources that named this index itself, one line each


def is_own_index(url: str, listen: Listen | None) -> bool:
    """Whether `url` reaches the index listening at `listen`: its port, and a host that is where
    it listens (any loopback spelling for a loopback or wildcard address, the host's name too
    for a wildcard one). Port 0 (a free port, picked at start) is never named in advance."""
    if listen is None or not listen[1]:
        return False
    try:
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 0)
    except ValueError:
        return False
    return port == listen[1] and _same_host((parts.hostname or "").lower().rstrip("."), listen[0])


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        found = ipaddress.ip_address(host)
    except ValueError:
        return None
    mapped = getattr(found, "ipv4_mapped", None)
    return mapped if mapped is not None else found


def _same_host(target: str, listen_host: str) -> bool:
    own, seen = _ip(listen_host), _ip(target)
    local = target == "localhost" or (seen is not None and seen.is_loopback)
    if own is None or own.is_loopback:  # "localhost", or a loopback address
        return local
    if own.is_unspecified:  # everywhere, loopback included
        return local or (seen is not None and seen.is_unspecified) or target == socket.gethostname().lower()
    return seen == own


def _config_files(environ: Mapping[str, str]) -> Iterator[Path]:
    """pip's files, lowest priority first: site-wide, per-user, per-environment, $PIP_CONFIG_FILE."""
    xdg_dirs = environ.get("XDG_CONFIG_DIRS", "") or "/etc/xdg"
    for directory in reversed(xdg_dirs.split(":")):
        if directory:
            yield Path(directory) / "pip" / "pip.conf"
    yield Path("/etc/pip.conf")
    home = Path(environ.get("HOME", "") or Path.home())
    yield home / ".pip" / "pip.conf"
    xdg_home = environ.get("XDG_CONFIG_HOME", "")
    yield (Path(xdg_home) if xdg_home.startswith("/") else home / ".config") / "pip" / "pip.conf"
    yield Path(sys.prefix) / "pip.conf"
    explicit = environ.get("PIP_CONFIG_FILE", "")
    if explicit and explicit != os.devnull:
        yield Path(explicit)


def _index_url_in(path: Path) -> str | None:
    parser = configparser.RawConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return None  # pip itself would refuse this file; it cannot be what pip uses
    found = None
    for section in ("global", "install"):  # the command's section overrides [global]
        for key in ("index-url", "index_url"):
            if parser.has_option(section, key):
                found = parser.get(section, key).strip() or found
    return found


# Where Debian keeps the wheels ensurepip installs (python3-pip-whl, brought by python3-venv).
ENSUREPIP_WHEELS = Path("/usr/share/python-wheels")
_INDEX_MODULE = "pip/_internal/models/"  # defines the default index; imports nothing of pip's


def pip_default_url(wheels: Path = ENSUREPIP_WHEELS) -> str | None:
    """pip's built-in default, asked of pip itself so that no registry is named here."""
    try:
        from pip._internal.models.index import PyPI  # noqa: PLC0415 - optional, and slow to import
    except ImportError:
        module = _index_module_in_wheel(wheels)
        found = getattr(getattr(module, "PyPI", None), "simple_url", None)
        return found if isinstance(found, str) else None
    url: str = PyPI.simple_url
    return url


def _index_module_in_wheel(wheels: Path) -> ModuleType | None:
    """pip's `models/index.py`, loaded straight from the newest pip wheel in `wheels`, alone:
    nothing else of pip is imported and `sys.path` is left as it is."""
    candidates = sorted(wheels.glob("pip-*.whl")) if wheels.is_dir() else []
    for wheel in reversed(candidates):
        try:
            spec = zipimport.zipimporter(f"{wheel}/{_INDEX_MODULE}").find_spec("index")
            if spec is None or spec.loader is None:
                continue
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        except Exception:  # noqa: BLE001, S112 - a broken wheel is no default; try the next
            continue
        return module
    return None


def _configured(env: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    """(URL, source) of every index pip is configured with, the one pip uses first."""
    from_env = env.get("PIP_INDEX_URL", "").strip()
    if from_env:
        yield from_env, "PIP_INDEX_URL"
    if env.get("PIP_CONFIG_FILE", "") != os.devnull:
        for path in reversed(list(_config_files(env))):
            url = _index_url_in(path) if path.is_file() else None
            if url:
                yield url, str(path)


def configured_index_url(environ: Mapping[str, str] | None = None, *,
                         listen: Listen | None = None) -> FoundIndex:
    """The index pip uses, skipping any source that names this index itself (at `listen`)."""
    env = os.environ if environ is None else environ
    skipped: list[str] = []
    for url, source in _configured(env):
        if not is_own_index(url, listen):
            return FoundIndex(_with_slash(url), source, tuple(skipped))
        skipped.append(f"{source}: {display_url(url)} is this index itself; skipped for pip's next source")
    default = pip_default_url()
    if default:
        return FoundIndex(_with_slash(default), "pip's default", tuple(skipped))
    return FoundIndex(None, "none: pip is not installed and upstream.url is not set", tuple(skipped))


def _with_slash(url: str) -> str:
    return url.rstrip("/") + "/"
