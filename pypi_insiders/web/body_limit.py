"""How much of a request's body waitress may read before the app answers, by what the request is.

waitress reads a whole body (up to `max_request_body_size`, the upload limit) into memory or a
temporary file before the app sees the request, on any path and for any caller. Only an upload
needs a large body, and only a caller with credentials may upload; page reads have none and the
yank form is a few fields. So the parser that reads each request decides from its first line and
headers, before any of the body is read: outside an upload (a POST to the upload paths with an
`Authorization` header), a body over `SMALL_BODY` is refused at once with 413 and the connection
is closed, its bytes never read. A webhook delivery (a POST below `/-/hooks/`, unauthenticated
by nature: its signature is in the body's HMAC) may be as large as `[webhooks] max_body` when
webhooks were on at start, and no larger. A chunked body is held to the same limit as it arrives. Nor
is a refused request told "100 Continue" (waitress 2.1 would, then read the body it refused).
Installed per server instance (`limit_bodies`), never by patching waitress's classes.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer
from waitress.utilities import RequestEntityTooLarge

SMALL_BODY: Final = 64 * 1024  # far beyond a yank form; nothing else takes a body


class _LimitedParser(HTTPRequestParser):
    upload_paths: ClassVar[frozenset[str]] = frozenset()
    hooks_prefix: ClassVar[str] = ""
    hooks_max: ClassVar[int] = 0  # 0: webhook deliveries get SMALL_BODY like everything else

    def _may_be_large(self) -> bool:
        parsed: Any = self  # types-waitress calls `command` bytes and has no `path`: both are str
        return bool(parsed.command == "POST" and parsed.path in self.upload_paths
                    and "AUTHORIZATION" in self.headers)

    def _is_hook(self) -> bool:
        parsed: Any = self
        return bool(self.hooks_max and parsed.command == "POST" and self.hooks_prefix
                    and str(parsed.path).startswith(self.hooks_prefix))

    def _too_large(self, size: int) -> bool:
        if self._is_hook():
            return size > max(self.hooks_max, SMALL_BODY)
        return size > SMALL_BODY and not self._may_be_large()

    def _refuse(self) -> None:
        self.error = RequestEntityTooLarge(
            f"a webhook delivery of more than {max(self.hooks_max, SMALL_BODY)} bytes (webhooks.max_body)"
            if self._is_hook() else
            f"a body of more than {SMALL_BODY} bytes is accepted only with an authenticated upload")
        self.completed = True
        self.expect_continue = False

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        if self._too_large(self.content_length):
            self._refuse()

    def received(self, data: bytes) -> int:
        consumed: int = super().received(data)
        if self.chunked and not self.completed and self._too_large(self.body_bytes_received):
            self._refuse()
        if self.error is not None:
            # No "100 Continue" for a refused request (ours or waitress's own limit): waitress
            # would send one, reopen the request and read the whole body it just refused.
            self.expect_continue = False
        return consumed


def limit_bodies(server: Any, upload_paths: frozenset[str],  # noqa: ANN401 - waitress is untyped
                 hooks: tuple[str, int] = ("", 0)) -> None:
    """Every listening socket of `server` (as `create_server` returns it) reads bodies so;
    `hooks`: the webhook path prefix and the largest delivery taken there (0: none larger)."""
    parser = type("BodyLimitedParser", (_LimitedParser,), {"upload_paths": upload_paths,
                                                           "hooks_prefix": hooks[0], "hooks_max": hooks[1]})
    listeners = [server] if isinstance(server, BaseWSGIServer) else [
        dispatcher for dispatcher in server.map.values() if isinstance(dispatcher, BaseWSGIServer)]
    for listener in listeners:
        listener.channel_class = type("BodyLimitedChannel", (listener.channel_class,),
                                      {"parser_class": parser})
