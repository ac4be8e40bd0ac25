"""What each forge sends with a push: who it is, how it signs, its delivery id, whether a tag was made.

Pure functions over the request's headers (WSGI environ keys) and raw body: nothing here
touches the disk, the secret's file or the network, so each forge's documented vectors test it.

Signatures are checked over the raw bytes before anything is parsed, with `hmac.compare_digest`
only. The first signature header present is the one checked (Forgejo sends the same digest under
three names); SHA-1 (GitHub's legacy `X-Hub-Signature: sha1=`) is never accepted, while
Bitbucket's `X-Hub-Signature: sha256=` is. The payload decides only whether to queue: its URL,
tag and commit are never used (the fetcher reads the configured remote).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import string
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

Environ = Mapping[str, Any]

_ZERO_SHA = frozenset({"0" * 40, "0" * 64})
_HEX = frozenset(string.hexdigits)
_MAX_ID = 128  # a delivery id is a UUID or a GUID; anything longer is cut for the journal
TOLERANCE = 300  # seconds a Standard Webhooks timestamp may be off, as the specification says
_MAX_SIGNATURES = 8  # `webhook-signature` may list several; more is not a rotation
# (event header, forge) in the order a forge is recognised: Forgejo also sends X-Gitea-Event
# and X-GitHub-Event, Gitea X-GitHub-Event, so the most specific name comes first.
_FORGES = (("HTTP_X_FORGEJO_EVENT", "forgejo"), ("HTTP_X_GITEA_EVENT", "gitea"),
           ("HTTP_X_GITLAB_EVENT", "gitlab"), ("HTTP_X_EVENT_KEY", "bitbucket"),
           ("HTTP_X_GITHUB_EVENT", "github"))
_DELIVERY_HEADERS = ("HTTP_X_FORGEJO_DELIVERY", "HTTP_X_GITEA_DELIVERY", "HTTP_X_GITHUB_DELIVERY",
                     "HTTP_IDEMPOTENCY_KEY", "HTTP_WEBHOOK_ID", "HTTP_X_GITLAB_EVENT_UUID",
                     "HTTP_X_GITLAB_WEBHOOK_UUID", "HTTP_X_REQUEST_UUID", "HTTP_X_REQUEST_ID")


@dataclass(frozen=True)
class Delivery:
    """Who sent it and what it claims to be, from the headers: for the journal and de-duplication."""

    forge: str  # github, gitea, forgejo, gitlab, bitbucket, or "unknown"
    event: str
    delivery: str  # "" when the forge sent no id


def describe(environ: Environ) -> Delivery:
    for header, forge in _FORGES:
        event = environ.get(header)
        if event:
            return Delivery(forge, _printable(str(event)), delivery_id(environ))
    return Delivery("unknown", "", delivery_id(environ))


def delivery_id(environ: Environ) -> str:
    for header in _DELIVERY_HEADERS:
        value = environ.get(header)
        if value:
            return _printable(str(value))
    return ""


def _printable(value: str) -> str:
    """Header text safe for the journal: printable ASCII, bounded."""
    return "".join(c if c.isascii() and c.isprintable() else "?" for c in value[:_MAX_ID])


def hex_hmac(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def signature_scheme(environ: Environ) -> str | None:
    """The name of the first signature header present, or None (unsigned)."""
    for header in ("HTTP_X_HUB_SIGNATURE_256", "HTTP_X_FORGEJO_SIGNATURE", "HTTP_X_GITEA_SIGNATURE",
                   "HTTP_X_HUB_SIGNATURE", "HTTP_WEBHOOK_SIGNATURE", "HTTP_X_GITLAB_TOKEN"):
        if environ.get(header):
            return header
    return None


def verify(environ: Environ, body: bytes, secrets: tuple[bytes, ...], now: float | None = None) -> str:
    """"" when a secret signs (or, for GitLab, is) this delivery; else why not, for the journal."""
    scheme = signature_scheme(environ)
    if scheme is None:
        return "unsigned"
    value = str(environ[scheme]).strip()
    if scheme == "HTTP_WEBHOOK_SIGNATURE":
        return standard_webhook(environ, body, secrets, time.time() if now is None else now)
    if scheme == "HTTP_X_GITLAB_TOKEN":
        given = value.encode("utf-8", "surrogateescape")
        return "" if _any_equal(given, secrets) else "wrong token"
    return _hex_signature(scheme, value, body, secrets)


def _hex_signature(scheme: str, value: str, body: bytes, secrets: tuple[bytes, ...]) -> str:
    """HMAC-SHA256 in hex: `sha256=HEX` (GitHub, Bitbucket, Gitea's copy) or bare (Gitea, Forgejo)."""
    if scheme in ("HTTP_X_HUB_SIGNATURE_256", "HTTP_X_HUB_SIGNATURE"):
        algorithm, equals, value = value.partition("=")
        if not equals:
            return "malformed signature"  # never echo it: the journal gets reasons, not signatures
        if algorithm.lower() != "sha256":
            return "sha1 signature refused" if algorithm.lower() == "sha1" else "not a sha256 signature"
    if len(value) != 64 or not set(value) <= _HEX:
        return "malformed signature"
    given = value.lower().encode()
    return "" if _any_equal(given, tuple(hex_hmac(s, body).encode() for s in secrets)) else "wrong signature"


def standard_webhook(environ: Environ, body: bytes, secrets: tuple[bytes, ...], now: float) -> str:
    """GitLab's signing token (the Standard Webhooks scheme): HMAC-SHA256 of `id.timestamp.body`
    under the base64 key after `whsec_`, base64 in `webhook-signature: v1,SIG [v1,SIG ...]`, and a
    timestamp within `TOLERANCE` seconds, so a captured delivery cannot be replayed later."""
    delivery = str(environ.get("HTTP_WEBHOOK_ID", ""))
    stamp = str(environ.get("HTTP_WEBHOOK_TIMESTAMP", ""))
    if not delivery or not stamp.isdigit():
        return "malformed signature"
    if abs(now - int(stamp)) > TOLERANCE:
        return "stale timestamp"
    signed = f"{delivery}.{stamp}.".encode() + body
    given = [part[3:].encode() for part in str(environ["HTTP_WEBHOOK_SIGNATURE"]).split()
             if part.startswith("v1,")]
    expected = tuple(base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
                     for key in map(_standard_key, secrets) if key)
    matched = False
    for candidate in given[:_MAX_SIGNATURES]:
        matched |= _any_equal(candidate, expected)
    return "" if matched else "wrong signature"


def _standard_key(secret: bytes) -> bytes:
    """The key a `whsec_` secret stands for; b"" for a secret of another kind."""
    if not secret.startswith(b"whsec_"):
        return b""
    try:
        return base64.b64decode(secret[6:], validate=True)
    except binascii.Error:
        return b""


def _any_equal(given: bytes, accepted: tuple[bytes, ...]) -> bool:
    """Constant time per candidate, and every candidate compared: rotation must not leak which."""
    matched = False
    for candidate in accepted:
        matched |= hmac.compare_digest(given, candidate)
    return matched


# --------------------------------------------------------------------------- what happened


def payload(environ: Environ, body: bytes) -> Mapping[str, Any] | None:
    """The JSON payload, also from GitHub's form encoding (`payload=`); None when unreadable."""
    content_type = str(environ.get("CONTENT_TYPE", "")).split(";")[0].strip().lower()
    try:
        if content_type == "application/x-www-form-urlencoded":
            values = parse_qs(body.decode(), max_num_fields=16).get("payload", [])
            if not values:
                return None
            body = values[0].encode()
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def classify(delivery: Delivery, data: Mapping[str, Any] | None) -> str:  # noqa: PLR0911 - a table
    """"ping", "tag" (a tag was created: queue) or "ignored" (anything else: answered 2xx)."""
    event = delivery.event.lower()
    if event == "ping" and delivery.forge in ("github", "gitea", "forgejo"):
        return "ping"
    if data is None:
        return "ignored"
    if delivery.forge == "gitlab":
        created = data.get("object_kind") == "tag_push" and str(data.get("after", "")) not in _ZERO_SHA
        return "tag" if created else "ignored"
    if delivery.forge == "bitbucket":
        return "tag" if _bitbucket_tag(data) else "ignored"
    if event == "create":
        return "tag" if data.get("ref_type") == "tag" else "ignored"
    if event == "push":
        ref = str(data.get("ref", ""))
        deleted = data.get("deleted") is True or str(data.get("after", "")) in _ZERO_SHA
        return "tag" if ref.startswith("refs/tags/") and not deleted else "ignored"
    return "ignored"


def _bitbucket_tag(data: Mapping[str, Any]) -> bool:
    """Cloud: `push.changes[].new.type == "tag"`; Data Center: `changes[]` adding a TAG ref."""
    push = data.get("push")
    cloud = push.get("changes", []) if isinstance(push, dict) else []
    for change in cloud if isinstance(cloud, list) else []:
        new = change.get("new") if isinstance(change, dict) else None
        if isinstance(new, dict) and new.get("type") == "tag":
            return True
    server = data.get("changes", [])
    for change in server if isinstance(server, list) else []:
        if not isinstance(change, dict):
            continue
        ref = change.get("ref")
        if isinstance(ref, dict) and ref.get("type") == "TAG" and change.get("type") == "ADD":
            return True
    return False
