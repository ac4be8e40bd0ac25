"""The users file: who may read and upload which projects, with salted scrypt hashes of their secrets.

One user per line, `NAME:HASH[:read=SCOPE][:upload=SCOPE][:expires=TIME][:token]`, HASH being
`$scrypt$ln=14,r=8,p=1$SALT$KEY` (unpadded base64, which has no `:`), SCOPE `*` or
comma-separated normalized project names (empty: nothing), TIME in UTC as ISO 8601 without
colons, `20261231T000000Z`.
A line of the first version, `NAME:HASH`, keeps what it always meant: read and upload `*`.
`#` comments and blank lines are kept when the CLI rewrites the file; a line broken by a hand
edit is skipped with a warning naming it, and every other user keeps working.
Hashes and tokens are `passwords.py`'s, scopes `scopes.py`'s.
"""

from __future__ import annotations

import calendar
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from pypi_insiders.errors import CredentialError, UsageError
from pypi_insiders.files import atomic_write, exclusive_lock
from pypi_insiders.web.passwords import NAME, check_hash
from pypi_insiders.web.scopes import EVERYTHING, NOTHING, Scope, parse_scope

log = logging.getLogger(__name__)

TOKEN_USER: Final = "__token__"  # noqa: S105 - the user name twine sends with API tokens
_FILE_TIME = "%Y%m%dT%H%M%SZ"  # written: ISO 8601's basic format, no ':' to split a line on
MAX_DAYS: Final = 36500


# --------------------------------------------------------------------------- one user, one line


@dataclass(frozen=True)
class User:
    name: str
    hashed: str
    read: Scope = EVERYTHING
    upload: Scope = EVERYTHING
    expires: float | None = None  # seconds since the epoch
    token: bool = False

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires

    def line(self) -> str:
        fields = [self.name, self.hashed, f"read={self.read}", f"upload={self.upload}"]
        if self.expires is not None:
            fields.append(f"expires={time.strftime(_FILE_TIME, time.gmtime(self.expires))}")
        if self.token:
            fields.append("token")
        return ":".join(fields)


def _parse_time(text: str) -> float:
    return float(calendar.timegm(time.strptime(text, _FILE_TIME)))


def parse_user(text: str) -> User:
    """One line; ValueError with what is wrong (never the hash or any secret in it)."""
    name, sep, rest = text.partition(":")
    fields = rest.split(":")
    if not sep:
        msg = "not NAME:HASH"
        raise ValueError(msg)
    if not NAME.fullmatch(name) or name == TOKEN_USER:
        msg = "not a valid user name"
        raise ValueError(msg)
    if not check_hash(fields[0]):
        msg = "not NAME:HASH (the hash is missing or malformed)"
        raise ValueError(msg)
    user = User(name, fields[0])
    if len(fields) > 1:  # written by this version: no upload unless the line says so
        user = replace(user, upload=NOTHING)
    for field in fields[1:]:
        key, sep, value = field.partition("=")
        if key == "read" and sep:
            user = replace(user, read=parse_scope(value))
        elif key == "upload" and sep:
            user = replace(user, upload=parse_scope(value))
        elif key == "expires" and sep:
            try:
                user = replace(user, expires=_parse_time(value))
            except ValueError:
                msg = f"expires={value!r} is not a time like 20261231T000000Z"
                raise ValueError(msg) from None
        elif key == "token" and not sep:
            user = replace(user, token=True)
        else:
            msg = f"unknown field {key!r}"
            raise ValueError(msg)
    return user


@dataclass(frozen=True)
class Line:
    """One line of the users file; `user` is None for comments, blank and malformed lines."""

    text: str
    user: User | None = None


def parse_lines(text: str, path: Path) -> list[Line]:
    lines: list[Line] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            lines.append(Line(raw))
            continue
        try:
            user = parse_user(stripped)
        except ValueError as error:
            log.warning("%s:%d: %s; line ignored", path, number, error, extra={"FILE": str(path)})
            lines.append(Line(raw))
            continue
        if user.name in seen:
            log.warning("%s:%d: user %s is listed twice; the first line counts", path, number, user.name,
                        extra={"FILE": str(path)})
            lines.append(Line(raw))
            continue
        seen.add(user.name)
        lines.append(Line(raw, user))
    return lines


def read_lines(path: Path) -> list[Line]:
    try:
        return parse_lines(path.read_text(encoding="utf-8"), path)
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as error:
        msg = f"{path}: cannot read the users file: {error}"
        raise CredentialError(msg) from None


def read_users(path: Path) -> dict[str, User]:
    return {line.user.name: line.user for line in read_lines(path) if line.user}


def write_lines(path: Path, lines: list[Line]) -> None:
    """Replace the file atomically, mode 0640, keeping its group: the service reads it through it.

    A new file takes its directory's group when this user may give it (root always may).
    """
    data = "".join(line.text + "\n" for line in lines).encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        existing = path.exists()
        group: int | None = (path if existing else path.parent).stat().st_gid
        if not existing and not _may_give(group):
            group = None
        atomic_write(path, data, 0o640, group=group)
    except OSError as error:
        msg = f"{path}: cannot write the users file: {error}"
        raise CredentialError(msg) from None


def _may_give(group: int | None) -> bool:
    return os.geteuid() == 0 or group == os.getegid() or group in os.getgroups()


# --------------------------------------------------------------------------- changes (the CLI's work)


def check_name(name: str) -> None:
    if name == TOKEN_USER:
        msg = f"{name!r}: reserved for API tokens, choose another user name"
        raise UsageError(msg)
    if not NAME.fullmatch(name):
        msg = (f"{name!r}: a user name is 1 to 64 letters, digits or ._@+- "
               "(no ':' or whitespace), starting with a letter or digit")
        raise UsageError(msg)


def scope_argument(option: str, text: str) -> Scope:
    try:
        return parse_scope(text)
    except ValueError as error:
        msg = f"{option}: {error}"
        raise UsageError(msg) from None


def expiry_argument(text: str | None, now: float) -> float | None:
    """`--expires DAYS`: a positive number of days from now, at most a century."""
    if text is None:
        return None
    try:
        days = float(text)
    except ValueError:
        days = -1.0
    if not 0 < days <= MAX_DAYS:  # also false for nan
        msg = f"--expires: expected a positive number of days (at most {MAX_DAYS}), got {text!r}"
        raise UsageError(msg)
    return now + days * 86400


@contextmanager
def _locked(users_file: Path) -> Iterator[None]:
    """Two `users add` at once must not lose one: read-modify-write under a lock on the directory."""
    try:
        users_file.parent.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(users_file.parent):
            yield
    except OSError as error:
        msg = f"{users_file.parent}: cannot open: {error.strerror}"
        raise CredentialError(msg) from None


def add_user(users_file: Path, user: User) -> bool:
    """Add the user or replace its line; True when it existed before."""
    entry = Line(user.line(), user)
    with _locked(users_file):
        lines = read_lines(users_file)
        existed = any(line.user and line.user.name == user.name for line in lines)
        if existed:
            lines = [entry if line.user and line.user.name == user.name else line for line in lines]
        else:
            lines.append(entry)
        write_lines(users_file, lines)
    return existed


def remove_user(users_file: Path, name: str) -> None:
    with _locked(users_file):
        lines = read_lines(users_file)
        kept = [line for line in lines if not (line.user and line.user.name == name)]
        if len(kept) == len(lines):
            msg = f"{name!r}: no such user in {users_file}"
            raise UsageError(msg)
        write_lines(users_file, kept)


# --------------------------------------------------------------------------- last use


def read_last_use(path: Path) -> dict[str, float]:
    """User name -> when the server last accepted its credentials; state the server writes."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): float(v) for k, v in data.items() if isinstance(v, int | float)}


def write_last_use(path: Path, updates: Mapping[str, float]) -> None:
    """Merge into the file (another worker process may have written other users meanwhile)."""
    merged = read_last_use(path)
    for name, when in updates.items():
        merged[name] = max(when, merged.get(name, 0.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(merged, sort_keys=True).encode(), 0o640, durable=False)
