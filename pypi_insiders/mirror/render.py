"""Mirrored project pages in our own bytes: PEP 503 HTML and PEP 691 JSON, links relative to us.

Links are relative (`../../mirror/<name>/<sha256>/<filename>`), so they are correct behind any
host name or prefix and are never built from `Host` or `X-Forwarded-*`: a stored or cached page
can carry no address a client chose. PEP 700's fields pass through (`upload-time`, `size`,
`versions`), and HTML gets uv's `data-upload-time`, so clients' own cooldowns work too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from typing import Final
from urllib.parse import quote

from packaging.utils import NormalizedName
from packaging.version import Version

from pypi_insiders.mirror.page import MirroredFile
from pypi_insiders.simple_api import API_VERSION, html_link, json_file

MIRROR_URL: Final = "/mirror/"  # the route files are served under
_LINK_PREFIX: Final = "../../mirror/"  # from /simple/<name>/ to MIRROR_URL


def file_path(name: NormalizedName, item: MirroredFile) -> str:
    """The file's path below MIRROR_URL."""
    return f"{name}/{item.sha256}/{quote(item.filename)}"


def _url(name: NormalizedName, item: MirroredFile) -> str:
    return f"{_LINK_PREFIX}{file_path(name, item)}#sha256={item.sha256}"


def _ordered(files: Sequence[MirroredFile]) -> list[MirroredFile]:
    return sorted(files, key=lambda f: (Version(f.version), f.filename))


def _yanked(item: MirroredFile) -> str | None:
    """The reason, "" for none given, None when not yanked (as `simple_api` takes it)."""
    if item.yanked is False:
        return None
    return item.yanked if isinstance(item.yanked, str) else ""


def _html_link(name: NormalizedName, item: MirroredFile) -> str:
    return html_link(_url(name, item), item.filename, requires_python=item.requires_python,
                     core_metadata=item.core_metadata, yanked=_yanked(item), upload_time=item.upload_time)


def _json_file(name: NormalizedName, item: MirroredFile) -> dict[str, object]:
    return json_file(_url(name, item), item.filename, item.sha256, requires_python=item.requires_python,
                     core_metadata=item.core_metadata, yanked=_yanked(item), size=item.size,
                     upload_time=item.upload_time)


def html_page(name: NormalizedName, files: Sequence[MirroredFile]) -> bytes:
    title = escape(name)
    return (f'<!DOCTYPE html>\n<html>\n  <head>\n    <meta name="pypi:repository-version" '
            f'content="{API_VERSION}">\n    <title>Links for {title}</title>\n  </head>\n  <body>\n'
            f"    <h1>Links for {title}</h1>\n"
            + "".join(_html_link(name, item) for item in _ordered(files))
            + "  </body>\n</html>\n").encode()


def json_page(name: NormalizedName, files: Sequence[MirroredFile]) -> bytes:
    """API 1.1 when every file has a size (PEP 700 makes it mandatory there), else 1.0."""
    ordered = _ordered(files)
    versions = sorted({Version(f.version) for f in ordered})
    complete = all(f.size is not None for f in ordered)
    document: dict[str, object] = {
        "meta": {"api-version": API_VERSION if complete else "1.0"},
        "name": name,
        "files": [_json_file(name, item) for item in ordered],
    }
    if complete:
        document["versions"] = [str(v) for v in versions]
    return json.dumps(document, separators=(",", ":")).encode()
