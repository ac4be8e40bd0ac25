"""Validation helpers: a TOML table view that collects problems with their dotted path.

Nothing raises on the first problem: every one is recorded, so `check-config` shows them all.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")


class Table:
    """A view of one TOML table that records problems with their dotted path instead of raising."""

    def __init__(self, data: Mapping[str, Any], where: str, problems: list[str], prefix: str) -> None:
        self.data, self.where, self.problems, self.prefix = data, where, problems, prefix
        self.seen: set[str] = set()

    def path(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.where}: {self.path(key)}: {message}")

    def get(self, key: str, kind: type[T], default: T, check: Callable[[T], str | None] | None = None) -> T:
        self.seen.add(key)
        if key not in self.data:
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.problem(key, f"expected {_type_name(kind)}, got {_type_name(type(value))} {value!r}")
            return default
        message = check(value) if check else None
        if message:
            self.problem(key, message)
            return default
        return value

    def table(self, key: str) -> Table:
        self.seen.add(key)
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            self.problem(key, f"expected a table, got {_type_name(type(value))}")
            value = {}
        return Table(value, self.where, self.problems, f"{self.path(key)}.")

    def finish(self, known: set[str] | None = None) -> None:
        """Unknown keys are errors: a typo must not silently fall back to a default."""
        allowed = known if known is not None else self.seen
        for key in self.data:
            if key not in allowed:
                hint = difflib.get_close_matches(key, sorted(allowed), n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else ""
                self.problem(key, f"unknown key{extra}")


def _type_name(kind: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            dict: "a table", list: "an array"}.get(kind, kind.__name__)


def positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def between(low: int, high: int) -> Callable[[float], str | None]:
    def check(value: float) -> str | None:
        return None if low <= value <= high else f"must be {low} to {high}"
    return check


def one_of(*choices: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in choices else f"must be one of {', '.join(map(repr, choices))}, got {value!r}"
    return check


_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60,
          "h": 3600, "hr": 3600, "hour": 3600, "d": 86400, "day": 86400}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*?)s?\s*")
MIN_DURATION, MAX_DURATION = 1.0, 30 * 86400.0


def parse_duration(value: object) -> float:
    """Seconds from a number or a text such as "15 minutes", "1 hour", "90s"; ValueError says why.

    The one spelling a person writes in a TOML file without looking anything up; a number alone
    is seconds, as everywhere else in the file.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        msg = f"expected a duration, got {value!r}"
        raise ValueError(msg)
    if isinstance(value, str):
        match = _DURATION.fullmatch(value.lower())
        if match is None or match[2] not in ("", *_UNITS):
            msg = f'not a duration: {value!r} (seconds, or a number and a unit: "15 minutes", "1 hour")'
            raise ValueError(msg)
        seconds = float(match[1]) * _UNITS.get(match[2], 1)
    else:
        seconds = float(value)
    if not MIN_DURATION <= seconds <= MAX_DURATION:
        msg = f"must be 1 second to 30 days, got {value!r}"
        raise ValueError(msg)
    return seconds


def duration(table: Table, key: str, default: float) -> float:
    """A duration key of `table`: a number of seconds or a text with a unit."""
    table.seen.add(key)
    if key not in table.data:
        return default
    try:
        return parse_duration(table.data[key])
    except ValueError as error:
        table.problem(key, str(error))
        return default


def check_http_url(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"not an http(s) URL: {value!r}"
    return None


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT`, `[v6]:PORT` or `:PORT`; raises ValueError with a readable reason."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        msg = f"expected HOST:PORT, got {value!r}"
        raise ValueError(msg)
    port = int(port_text)
    if not 0 <= port <= 65535:
        msg = f"port out of range in {value!r}"
        raise ValueError(msg)
    host = host.strip("[]") or "127.0.0.1"
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            msg = f"expected an IP address or localhost, got {host!r}"
            raise ValueError(msg) from None
    return host, port


def listen_check(value: str) -> str | None:
    try:
        parse_listen(value)
    except ValueError as error:
        return str(error)
    return None


def resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path
