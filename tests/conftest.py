"""Fixtures shared by every tier: configs on disk, free loopback ports, process cleanup by PID."""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from pypi_insiders import config

ConfigMaker = Callable[..., Path]


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(value)


def to_toml(data: Mapping[str, Any], prefix: str = "") -> str:
    """Enough TOML for test configs: scalars, arrays and nested tables (quoted keys)."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            tables.append((key, value))
        else:
            lines.append(f"{json.dumps(key)} = {toml_value(value)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for key, table in tables:
        name = f"{prefix}{json.dumps(key)}"
        out += f"\n[{name}]\n" + to_toml(table, f"{name}.")
    return out


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


def config_maker(root: Path) -> ConfigMaker:
    """Write `root/config.toml` with every path inside `root` (data in `root/data`) and no
    upstream (fallback off); keyword tables are merged in."""

    def make(**tables: Mapping[str, Any]) -> Path:
        data: dict[str, Any] = {
            "server": {"listen": "127.0.0.1:0"},
            "paths": {"data": str(root / "data"), "cache": str(root / "cache")},
            "upstream": {"url": "http://127.0.0.1:9/simple/", "fallback": "off"},
            "upload": {"users_file": str(root / "users")},
            "fetch": {"repos_dir": str(root / "repos.d"),
                      "credentials_dir": str(root / "credentials")},
        }
        for name, table in tables.items():
            data[name] = {**data.get(name, {}), **table}
        path = root / "config.toml"
        path.write_text(to_toml(data))
        return path

    return make


@pytest.fixture
def make_config(tmp_path: Path, data_dir: Path) -> ConfigMaker:
    """Write a config whose every path is inside tmp_path, the data in `data_dir` (tmp_path/data)."""
    return config_maker(tmp_path)


@pytest.fixture
def loaded_config(make_config: ConfigMaker) -> config.Config:
    return config.load(str(make_config()))


@pytest.fixture
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """`cli.main` in-process replaces the root handlers; later tests must not log to a closed stream."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test reads the developer's config or notifies a real systemd."""
    monkeypatch.delenv("PYPI_INSIDERS_CONFIG", raising=False)
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    yield
    assert "PYPI_INSIDERS_CONFIG" not in os.environ
