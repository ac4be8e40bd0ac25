"""Files sent by the reverse proxy in front, once the app has said that this caller may have them.

nginx in front (the sample site `etc/nginx/pypi-insiders.conf`) passes every request to the
app and adds `X-Sendfile-Type: X-Accel-Redirect`. For a distribution or metadata file that
the caller may read, the app then answers 200 with its headers, an empty body, and the file
named in `X-Accel-Redirect`; nginx sends the bytes itself from an `internal` location, which
no client can ask for directly. The app keeps every decision (read scopes, `public_projects`,
upstream fallback, 404), nginx does only the sending (sendfile, ranges, slow clients), so
putting it in front never opens the files to everyone.

The internal URLs are fixed here, never read from the request: a mapping sent along with the
request (as Rack's `X-Accel-Mapping` does) would let a client aim the proxy at any internal
location of it. A client that sends the header to the app directly gets an empty body and the
name of a file it may read anyway.

The header counts only from `[server] trusted_proxy` (`forwarded.py` removes it from anyone
else's requests): a caching proxy that passed a client's header on would otherwise keep an empty
answer for the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

from pypi_insiders.web.forwarded import VIA_PROXY

STORE_URL: Final = "/-/store/"  # nginx: `location /-/store/ { internal; alias <store>/; }`
METADATA_URL: Final = "/-/metadata/"  # nginx: `alias <index>/packages/;`
MIRROR_URL: Final = "/-/mirror/"  # nginx: `alias <cache>/mirror/files/;` (verified mirrored files)
HEADER: Final = "X-Accel-Redirect"
_ASKED: Final = "x-accel-redirect"


def wanted(environ: Mapping[str, Any]) -> bool:
    """Whether the proxy in front sends files named in `X-Accel-Redirect` (nginx's convention)."""
    asked = environ.get("HTTP_X_SENDFILE_TYPE")
    return bool(environ.get(VIA_PROXY)) and isinstance(asked, str) and asked.strip().lower() == _ASKED


def target(prefix: str, root: str, path: str) -> str:
    """The internal URL of `path`, a real path below `root`, percent-encoded for nginx."""
    relative = os.path.relpath(path, root).replace(os.sep, "/")
    return prefix + quote(relative, safe="/")
