"""Upload credentials: a file of salted scrypt hashes, and the check the upload API runs per request.

One user per line, `NAME:$scrypt$ln=14,r=8,p=1$SALT$KEY` (SALT and KEY in unpadded base64).
The cost parameters travel with each hash so they can be raised later without invalidating old
entries; `#` comments and blank lines are kept when the CLI rewrites the file. scrypt because it
is in hashlib and memory-hard; its cost (a sixth of a second here) is paid once per client and
secret thanks to the in-memory cache of successful checks, since twine sends every file alone.

API tokens are secrets like any other, stored hashed under their user's name. They carry that
name (`insiders-<base64 name>.<random>`), so twine's `__token__` user name can find the entry.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import hashlib
import hmac
import logging
import os
import re
import secrets
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pypi_insiders.errors import CredentialError, UsageError
from pypi_insiders.files import atomic_write, exclusive_lock

log = logging.getLogger(__name__)

TOKEN_USER = "__token__"  # noqa: S105 - the user name twine sends with API tokens
TOKEN_PREFIX = "insiders-"  # noqa: S105 - marks our tokens, not a secret
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
_MIN_SECRET, _MAX_SECRET = 8, 1024
_LOG2_N, _R, _P = 14, 8, 1
_MAXMEM = 128 * 1024 * 1024
_CACHE_LIMIT = 4096


# --------------------------------------------------------------------------- hashing


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _scrypt(secret: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=1 << log2_n, r=r, p=p, dklen=32, maxmem=_MAXMEM)


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    key = _scrypt(secret, salt, _LOG2_N, _R, _P)
    return f"$scrypt$ln={_LOG2_N},r={_R},p={_P}${_b64(salt)}${_b64(key)}"


def _parse_hash(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    """The parameters of a hash string; bounded so a tampered file cannot make us allocate gigabytes."""
    _empty, scheme, params, salt, key = encoded.split("$")
    values = dict(item.split("=", 1) for item in params.split(","))
    log2_n, r, p = int(values["ln"]), int(values["r"]), int(values["p"])
    if scheme != "scrypt" or not (1 <= log2_n <= 20 and 1 <= r <= 16 and 1 <= p <= 4):
        raise ValueError(encoded)
    return log2_n, r, p, _unb64(salt), _unb64(key)


def check_hash(encoded: str) -> bool:
    try:
        _parse_hash(encoded)
    except (ValueError, KeyError, binascii.Error):
        return False
    return True


def verify_secret(secret: str, encoded: str) -> bool:
    log2_n, r, p, salt, key = _parse_hash(encoded)
    return hmac.compare_digest(_scrypt(secret, salt, log2_n, r, p), key)


_DUMMY_HASH = f"$scrypt$ln={_LOG2_N},r={_R},p={_P}${_b64(bytes(16))}${_b64(bytes(32))}"


# --------------------------------------------------------------------------- the file


@dataclass(frozen=True)
class Line:
    """One line of the users file; `name` is None for comments, blank and malformed lines."""

    text: str
    name: str | None = None
    hashed: str | None = None


def parse_lines(text: str, path: Path) -> list[Line]:
    lines: list[Line] = []
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            lines.append(Line(raw))
            continue
        name, sep, hashed = stripped.partition(":")
        if not sep or not _NAME.fullmatch(name) or not check_hash(hashed):
            log.warning("%s:%d: not NAME:HASH, line ignored", path, number, extra={"FILE": str(path)})
            lines.append(Line(raw))
            continue
        lines.append(Line(raw, name, hashed))
    return lines


def read_lines(path: Path) -> list[Line]:
    try:
        return parse_lines(path.read_text(encoding="utf-8"), path)
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as error:
        msg = f"{path}: cannot read the users file: {error}"
        raise CredentialError(msg) from None


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


def check_name(name: str) -> None:
    if name == TOKEN_USER:
        msg = f"{name!r}: reserved for API tokens, choose another user name"
        raise UsageError(msg)
    if not _NAME.fullmatch(name):
        msg = (
            f"{name!r}: a user name is 1 to 64 letters, digits or ._@+- "
                         "(no ':' or whitespace), starting with a letter or digit"
        )
        raise UsageError(msg)


def make_token(name: str) -> str:
    return f"{TOKEN_PREFIX}{base64.urlsafe_b64encode(name.encode()).decode().rstrip('=')}." \
           f"{secrets.token_urlsafe(32)}"


def token_owner(token: str) -> str | None:
    """The user name a token was issued to, or None when it is not one of our tokens."""
    if not token.startswith(TOKEN_PREFIX) or "." not in token:
        return None
    encoded = token[len(TOKEN_PREFIX):].split(".", 1)[0]
    try:
        name = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return name if _NAME.fullmatch(name) else None


# --------------------------------------------------------------------------- CLI


def _read_secret() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("secret: ")
        if getpass.getpass("secret again: ") != first:
            msg = "the two secrets differ; nothing changed"
            raise UsageError(msg)
        secret = first
    else:
        secret = sys.stdin.readline().rstrip("\r\n")
    if len(secret) < _MIN_SECRET:
        msg = f"the secret must be at least {_MIN_SECRET} characters; nothing changed"
        raise UsageError(msg)
    if len(secret) > _MAX_SECRET:
        msg = f"the secret must be at most {_MAX_SECRET} characters; nothing changed"
        raise UsageError(msg)
    return secret


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


def cli_add(users_file: Path, name: str, token: bool) -> int:
    """Add a user or replace its secret; with `token`, generate one and print it, once."""
    check_name(name)
    secret = make_token(name) if token else _read_secret()
    hashed = hash_secret(secret)
    entry = Line(f"{name}:{hashed}", name, hashed)
    with _locked(users_file):
        lines = read_lines(users_file)
        existed = any(line.name == name for line in lines)
        lines = [entry if line.name == name else line for line in lines] if existed else [*lines, entry]
        write_lines(users_file, lines)
    if token:
        print(secret)
        print(f"API token for {name}: shown once; use it as the password with user name "
              f"{name!r} or {TOKEN_USER!r}", file=sys.stderr)
    else:
        print(f"{'changed the secret of' if existed else 'added'} user {name} in {users_file}")
    return 0


def cli_remove(users_file: Path, name: str) -> int:
    with _locked(users_file):
        lines = read_lines(users_file)
        kept = [line for line in lines if line.name != name]
        if len(kept) == len(lines):
            msg = f"{name!r}: no such user in {users_file}"
            raise UsageError(msg)
        write_lines(users_file, kept)
    print(f"removed user {name} from {users_file}")
    return 0


def cli_list(users_file: Path) -> int:
    for line in read_lines(users_file):
        if line.name is not None:
            print(line.name)
    return 0


# --------------------------------------------------------------------------- the app's check


class Users:
    """The users file as the upload API sees it: re-read when it changes, checks cached in memory.

    The cache key is an HMAC of the credentials under a key that lives only in this process, so
    the cache holds nothing that could be turned back into a secret offline.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._loaded = False
        self._hashes: dict[str, str] = {}
        self._cache_key = secrets.token_bytes(32)
        self._verified: dict[bytes, str] = {}

    def verify(self, name: str, secret: str) -> str | None:
        """The user name these credentials belong to, or None; the same work for every failure."""
        if name == TOKEN_USER:
            name = token_owner(secret) or ""
        hashes = self._current()
        key = hmac.new(self._cache_key, f"{name}\0{secret}".encode(), hashlib.sha256).digest()
        hashed = hashes.get(name)
        with self._lock:
            if hashed is not None and self._verified.get(key) == hashed:
                return name
        # An unknown name still pays for one KDF, so timing does not tell which names exist.
        matches = verify_secret(secret, hashed or _DUMMY_HASH)
        if hashed is None or not matches:
            return None
        with self._lock:
            if len(self._verified) >= _CACHE_LIMIT:
                self._verified.clear()
            self._verified[key] = hashed
        return name

    def __len__(self) -> int:
        return len(self._current())

    def _current(self) -> dict[str, str]:
        try:
            st = self.path.stat()
            stamp: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = None
        with self._lock:
            if not self._loaded or stamp != self._stamp:
                self._load(stamp)
            return self._hashes

    def _load(self, stamp: tuple[int, int, int] | None) -> None:
        try:
            lines = read_lines(self.path) if stamp is not None else []
        except CredentialError as error:
            log.error("%s; every upload is refused", error, extra={"FILE": str(self.path)})
            lines = []
        self._hashes = {line.name: line.hashed for line in lines if line.name and line.hashed}
        self._verified.clear()
        self._stamp, self._loaded = stamp, True
        if not self._hashes:
            log.warning("%s: no upload users (file missing or empty); every upload is refused",
                        self.path, extra={"FILE": str(self.path)})
        else:
            log.info("%s: %d upload users", self.path, len(self._hashes), extra={"FILE": str(self.path)})
