"""Secrets at rest: salted scrypt hashes of passwords and API tokens, and the tokens' format.

scrypt because it is in hashlib and memory-hard; its cost (a sixth of a second) is paid once
per client and secret thanks to the request authenticator's cache (`auth.py`). API tokens are
secrets like any other, stored hashed under their user's name; they carry that name
(`insiders-<base64 name>.<random>`), so twine's `__token__` user name can find the entry.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from typing import Final

TOKEN_PREFIX: Final = "insiders-"  # noqa: S105 - marks our tokens, not a secret
NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")  # a user name, as a token carries it
_LOG2_N, _R, _P = 14, 8, 1
_MAXMEM = 128 * 1024 * 1024


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


DUMMY_HASH: Final = f"$scrypt$ln={_LOG2_N},r={_R},p={_P}${_b64(bytes(16))}${_b64(bytes(32))}"


def make_token(name: str) -> str:
    owner = base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")
    return f"{TOKEN_PREFIX}{owner}.{secrets.token_urlsafe(32)}"


def token_owner(token: str) -> str | None:
    """The user name a token was issued to, or None when it is not one of our tokens."""
    if not token.startswith(TOKEN_PREFIX) or "." not in token:
        return None
    encoded = token[len(TOKEN_PREFIX):].split(".", 1)[0]
    try:
        name = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return name if NAME.fullmatch(name) else None
