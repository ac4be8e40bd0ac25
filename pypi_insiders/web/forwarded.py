"""Who is asking: the connection's peer, or, from `[server] trusted_proxy`, the client it names.

A reverse proxy in front (the sample nginx site) passes on the client's address in
`X-Forwarded-For`, the scheme in `X-Forwarded-Proto`, and `X-Sendfile-Type` to have the files
sent by itself (`sendfile.py`). Those headers are believed only from the trusted proxy's own
address: anyone else could pick the address its failed logins count against, forge access-log
entries, or get an empty, cacheable answer instead of a file. From the trusted proxy, the client
is the last address of `X-Forwarded-For` (the one the proxy added), kept only when it is an IP
address. From anyone else, the headers are removed before the app sees the request.

Proxy headers from a peer that is not trusted are also a sign: the index listens on loopback,
where anonymous callers read everything by default (`[access] anonymous`), and a proxy on the
same host passes the whole network's requests on from loopback. Such requests are marked
(`UNTRUSTED_PROXY`) so that the read policy gives anonymous callers nothing unless
`anonymous = "read"` was set on purpose. The first one is logged with the fix, and noted in
the state directory (`UNTRUSTED_PROXY_FILE`) for `check-config` to say at every start and reload.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, Final

from pypi_insiders.files import atomic_write
from pypi_insiders.wording import utc

log = logging.getLogger(__name__)

UNTRUSTED_PROXY_FILE: Final = "untrusted-proxy.txt"  # in the state directory: who sent them, when
VIA_PROXY: Final = "pypi_insiders.via_proxy"  # environ: came through the trusted proxy
UNTRUSTED_PROXY: Final = "pypi_insiders.untrusted_proxy"  # environ: proxy headers, no trust
# What a proxy says about the request; the WSGI keys of the headers.
PROXY_HEADERS: Final = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST",
                        "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_BY", "HTTP_FORWARDED",
                        "HTTP_X_REAL_IP", "HTTP_X_SENDFILE_TYPE")


def _ip(text: str) -> str | None:
    """The address in its canonical spelling; None when `text` is not one."""
    try:
        return str(ipaddress.ip_address(text.strip().strip("[]")))
    except ValueError:
        return None


class Forwarding:
    """`[server] trusted_proxy` applied to each request's environ (a [server] setting: no reload)."""

    def __init__(self, trusted_proxy: str | None, state: Path | None = None) -> None:
        self.trusted = _ip(trusted_proxy) if trusted_proxy else None
        self.note = state / UNTRUSTED_PROXY_FILE if state is not None else None
        self._warned = False

    def apply(self, environ: MutableMapping[str, Any]) -> None:
        peer = str(environ.get("REMOTE_ADDR") or "")
        if self.trusted is not None and _ip(peer) == self.trusted:
            environ[VIA_PROXY] = True
            hops = str(environ.get("HTTP_X_FORWARDED_FOR") or "").split(",")
            client = _ip(hops[-1])
            if client is not None:
                environ["REMOTE_ADDR"] = client
            scheme = str(environ.get("HTTP_X_FORWARDED_PROTO") or "").strip().lower()
            if scheme in ("http", "https"):
                environ["wsgi.url_scheme"] = scheme
            return
        sent = [key for key in PROXY_HEADERS if key in environ]
        for key in sent:
            del environ[key]
        if sent and self.trusted is None:
            environ[UNTRUSTED_PROXY] = True
            self._warn(peer, sent)

    def _warn(self, peer: str, sent: list[str]) -> None:
        if self._warned:
            return
        self._warned = True
        names = ", ".join(key[5:].replace("_", "-").title() for key in sent)
        message = (f"requests from {peer} carry proxy headers ({names}) but [server] trusted_proxy is "
                   "not set: the headers are ignored, and anonymous callers through that proxy read "
                   f'nothing unless [access] anonymous = "read" is set; set trusted_proxy = "{peer}" if '
                   "that is your reverse proxy")
        log.warning("%s", message)
        if self.note is not None:
            stamp = utc(time.time())
            try:
                atomic_write(self.note, f"{stamp}: {message}\n".encode(), 0o640, durable=False)
            except OSError as error:
                log.warning("%s: cannot note it for check-config: %s", self.note, error)


def untrusted_proxy_note(state: Path) -> str | None:
    """What the service noted about proxy headers without trusted_proxy; None when nothing."""
    try:
        return (state / UNTRUSTED_PROXY_FILE).read_text(errors="replace").strip() or None
    except OSError:
        return None
