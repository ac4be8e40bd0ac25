"""Request authentication: the `Authorization` header of a request into a user of the users file.

A page read must not cost a password hash: pip and uv ask for dozens of pages per install, and
scrypt costs a sixth of a second. So a header is verified once and the result kept in memory,
keyed by a keyed hash of the header under a key that lives only in this process (the cache
holds nothing that could be turned back into a secret offline). The cache is bounded, and when
the users file changes (looked at every fraction of a second, so `users remove` takes effect on
a running server within one) it keeps the entries of users whose line did not change; an expiry
is checked on every request. Failures are never cached: past a limit per client address and
user name no KDF runs at all. Counting per user name means that nobody's failures, behind the
same NAT, CI egress or proxy, lock out another user's correct secret; failures with names that
are no user's are counted together per address, so inventing names does not multiply the
guesses. An IPv6 client is counted per /64, which one host usually holds whole. Requests that
arrive together with the same new header wait for one verification instead of each running
their own: a CI job's first burst of parallel downloads costs one KDF, not one per connection.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import logging
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from pypi_insiders.errors import CredentialError
from pypi_insiders.files import atomic_write, exclusive_lock
from pypi_insiders.web import passwords
from pypi_insiders.web import users as users_file
from pypi_insiders.web.users import TOKEN_USER, User
from pypi_insiders.wording import counted, utc

log = logging.getLogger(__name__)

_CACHE_LIMIT: Final = 4096
_MAX_HEADER: Final = 4096  # longer than any user name and secret we issue or accept
_RECHECK: Final = 0.2  # seconds between looks at the users file
_LAST_USE_EVERY: Final = 60.0  # seconds between writes of one user's last use


class AuthError(Exception):
    """Credentials that cannot be accepted; `status` 401 (ask again) or 429 (too many failures).

    `refused`: they were readable but wrong or expired (the upload API answers those with 403).
    """

    def __init__(self, status: int, message: str, retry_after: int = 0, *, refused: bool = False) -> None:
        super().__init__(message)
        self.status, self.message, self.retry_after, self.refused = status, message, retry_after, refused


def basic_credentials(header: str) -> tuple[str, str]:
    """User name and secret of an `Authorization: Basic` value; AuthError(401) when unusable."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise AuthError(401, "authentication required (HTTP Basic)")
    if len(header) > _MAX_HEADER:
        raise AuthError(401, "malformed HTTP Basic credentials (too long)")
    try:
        name, sep, secret = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise AuthError(401, "malformed HTTP Basic credentials") from None
    if not sep or not name or "\0" in name or "\0" in secret:
        raise AuthError(401, "malformed HTTP Basic credentials")
    return name, secret


def client_bucket(address: str) -> str:
    """The address failures are counted under: an IPv6 client's /64 (a host gets a whole /64 and
    picks any address in it), an IPv4-mapped IPv6 address as the IPv4 one."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)


def failure_key(client: str, user: str | None) -> str:
    """What one failure counts against: the client's bucket and the user (None: a name of nobody's)."""
    return f"{client_bucket(client)} {user if user is not None else '?'}"


class FailedLogins:
    """Failed logins per key (`failure_key`) over a sliding window; past the limit no KDF runs.

    A wrong secret costs the server a sixth of a second of CPU: without this, one client could
    keep every worker thread hashing guesses and the index would stop serving pages. With
    `shared`, the count lives in that file under a lock, so the processes of one service
    (`[server] processes`) count together: N processes must not mean N times the guesses. It is
    only read and written on the path that runs a KDF anyway.
    """

    def __init__(self, limit: int = 10, window: float = 60.0, shared: Path | None = None) -> None:
        self.limit, self.window, self.shared = limit, window, shared
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> int:
        """Seconds until this key may try again; 0 when it may now."""
        now = time.time()
        with self._counts() as failures:
            recent = [t for t in failures.pop(client, []) if now - t < self.window]
            if recent:
                failures[client] = recent
            return int(recent[0] + self.window - now) + 1 if len(recent) >= self.limit else 0

    def failed(self, client: str) -> None:
        now = time.time()
        with self._counts() as failures:
            if len(failures) > 4096:  # bounded memory: forget clients that went quiet
                for quiet in [c for c, ts in failures.items() if now - ts[-1] >= self.window]:
                    del failures[quiet]
            failures.setdefault(client, []).append(now)

    @contextmanager
    def _counts(self) -> Iterator[dict[str, list[float]]]:
        with self._lock:
            if self.shared is None:
                yield self._failures
                return
            with exclusive_lock(self.shared.with_name(self.shared.name + ".lock")):
                failures = _read_counts(self.shared)
                yield failures
                atomic_write(self.shared, json.dumps(failures).encode(), 0o600, durable=False)


def _read_counts(path: Path) -> dict[str, list[float]]:
    """The shared counts; a missing or damaged file counts nothing (it is rewritten whole)."""
    try:
        found = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(found, dict):
        return {}
    return {str(client): [float(t) for t in times if isinstance(t, (int, float))]
            for client, times in found.items() if isinstance(times, list)}


class Authenticator:
    """The users file as requests see it, with the cache of verified headers and the login limit."""

    def __init__(self, path: Path, last_use: Path | None = None,
                 failed_logins: FailedLogins | None = None) -> None:
        self.path = path
        self.last_use = last_use
        self.failed_logins = failed_logins if failed_logins is not None else FailedLogins()
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._checked = -1.0
        self._loaded = False
        self._users: dict[str, User] = {}
        self._key = secrets.token_bytes(32)
        self._verified: dict[bytes, User] = {}
        self._pending: dict[bytes, threading.Lock] = {}  # headers being verified right now
        self.kdf_runs = 0  # verifications that ran the KDF, for tests and the benchmark
        self._used: dict[str, float] = {}  # last use written, per user

    def user(self, environ: Mapping[str, Any]) -> User | None:
        """The request's user; None without an Authorization header; AuthError for unusable ones."""
        header = environ.get("HTTP_AUTHORIZATION")
        if header is None:
            return None
        users = self._current()
        key = hashlib.blake2b(str(header).encode("utf-8", "surrogatepass"), key=self._key,
                              digest_size=16).digest()
        now = time.time()
        found = self._verified.get(key)
        if found is None or users.get(found.name) is not found:
            users, found = self._verify_once(str(header), key, str(environ.get("REMOTE_ADDR", "-")))
        if found.expired(now):
            raise AuthError(401, f"the credentials of user {found.name!r} expired on "
                              f"{utc(found.expires or now)}", refused=True)
        if now - self._used.get(found.name, 0.0) >= _LAST_USE_EVERY:
            self._note_use(found.name, now)
        return found

    def _verify_once(self, header: str, key: bytes, client: str) -> tuple[dict[str, User], User]:
        """One verification per header at a time; those who waited take its result."""
        with self._lock:
            gate = self._pending.setdefault(key, threading.Lock())
        with gate:
            try:
                # A miss pays for a KDF anyway: look at the file now, so a user just added can log in.
                users = self._current(force=True)
                found = self._verified.get(key)
                if found is None or users.get(found.name) is not found:
                    found = self._verify(header, key, users, client)
                return users, found
            finally:
                with self._lock:
                    if self._pending.get(key) is gate:
                        del self._pending[key]

    def _verify(self, header: str, key: bytes, users: Mapping[str, User], client: str) -> User:
        name, secret = basic_credentials(header)
        if name == TOKEN_USER:
            name = passwords.token_owner(secret) or ""
        user = users.get(name)
        # Only a user's own name is ever repeated: a name of nobody's may be a secret typed in
        # the wrong field (twine's fields swapped, `https://TOKEN@host/`).
        shown = f"user {name!r}" if user is not None else "an unknown user"
        counted_as = failure_key(client, user.name if user is not None else None)
        wait = self.failed_logins.retry_after(counted_as)
        if wait:
            raise AuthError(429, f"too many failed logins for {shown} from {client}; retry in {wait} s",
                            wait)
        # An unknown name still pays for one KDF, so timing does not tell which names exist.
        self.kdf_runs += 1
        matches = passwords.verify_secret(secret, user.hashed if user else passwords.DUMMY_HASH)
        if user is None or not matches:
            self.failed_logins.failed(counted_as)
            raise AuthError(401, f"invalid credentials for {shown}", refused=True)
        with self._lock:
            if len(self._verified) >= _CACHE_LIMIT:
                self._verified.clear()
            self._verified[key] = user
        return user

    def __len__(self) -> int:
        return len(self._current())

    def _current(self, *, force: bool = False) -> dict[str, User]:
        now = time.monotonic()
        if self._loaded and now - self._checked < _RECHECK and not force:
            return self._users
        try:
            st = self.path.stat()
            stamp: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = None
        with self._lock:
            if not self._loaded or stamp != self._stamp:
                self._load(stamp)
            self._checked = now
            return self._users

    def _load(self, stamp: tuple[int, int, int] | None) -> None:
        try:
            found = users_file.read_users(self.path) if stamp is not None else {}
        except CredentialError as error:
            log.error("%s; every login is refused", error, extra={"FILE": str(self.path)})
            found = {}
        # A user whose line did not change keeps its object, so its cached headers stay valid
        # (the cache checks identity): `users add` of one user costs nobody else a KDF.
        kept = {name: self._users[name] if self._users.get(name) == user else user
                for name, user in found.items()}
        self._users = kept
        self._verified = {k: u for k, u in self._verified.items() if kept.get(u.name) is u}
        self._stamp, self._loaded = stamp, True
        if not found:
            log.warning("%s: no users (file missing or empty); every login is refused",
                        self.path, extra={"FILE": str(self.path)})
        else:
            log.info("%s: %s", self.path, counted(len(found), "user"), extra={"FILE": str(self.path)})

    def _note_use(self, name: str, now: float) -> None:
        """For `users list`; at most one write per user a minute, and never a failed request."""
        self._used[name] = now
        if self.last_use is None:
            return
        try:
            users_file.write_last_use(self.last_use, {name: now})
        except OSError as error:
            log.warning("%s: cannot record when users last logged in: %s", self.last_use, error,
                        extra={"FILE": str(self.last_use)})
