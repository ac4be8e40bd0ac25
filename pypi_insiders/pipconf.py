"""The index pip on this host is configured to use: the default upstream.

An administrator who pointed pip at a mirror expects names we do not hold to go to that
mirror too, so we read pip's own sources in pip's own order rather than naming a registry.
pip's configuration API is internal, so the files are read here; pip is asked only for its
built-in default, and only when nothing is configured. Without pip installed (the Debian
package does not depend on it: its recommends would bring a compiler), the default is read
from the pip wheel that ensurepip installs into new venvs, which the builds need anyway.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import sys
import zipimport
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType


@dataclass(frozen=True)
class FoundIndex:
    url: str | None
    source: str


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


def configured_index_url(environ: Mapping[str, str] | None = None) -> FoundIndex:
    env = os.environ if environ is None else environ
    from_env = env.get("PIP_INDEX_URL", "").strip()
    if from_env:
        return FoundIndex(_with_slash(from_env), "PIP_INDEX_URL")
    found: FoundIndex | None = None
    if env.get("PIP_CONFIG_FILE", "") != os.devnull:
        for path in _config_files(env):
            url = _index_url_in(path) if path.is_file() else None
            if url:
                found = FoundIndex(_with_slash(url), str(path))
    if found:
        return found
    default = pip_default_url()
    if default:
        return FoundIndex(_with_slash(default), "pip's default")
    return FoundIndex(None, "none: pip is not installed and upstream.url is not set")


def _with_slash(url: str) -> str:
    return url.rstrip("/") + "/"
