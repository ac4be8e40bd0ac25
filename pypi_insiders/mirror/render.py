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
from pypi_insiders.simple_api import API_VERSION

MIRROR_URL: Final = "/mirror/"  # the route files are served under
_LINK_PREFIX: Final = "../../mirror/"  # from /simple/<name>/ to MIRROR_URL


def file_path(name: NormalizedName, item: MirroredFile) -> str:
    """The file's path below MIRROR_URL."""
    return f"{name}/{item.sha256}/{quote(item.filename)}"


def _url(name: NormalizedName, item: MirroredFile) -> str:
    return f"{_LINK_PREFIX}{file_path(name, item)}#sha256={item.sha256}"


def _ordered(files: Sequence[MirroredFile]) -> list[MirroredFile]:
    return sorted(files, key=lambda f: (Version(f.version), f.filename))


def _html_link(name: NormalizedName, item: MirroredFile) -> str:
    attributes = [f'href="{escape(_url(name, item))}"']
    if item.requires_python:
        attributes.append(f'data-requires-python="{escape(item.requires_python)}"')
    if item.core_metadata:
        value = f"sha256={item.core_metadata}"
        attributes.append(f'data-core-metadata="{value}" data-dist-info-metadata="{value}"')
    if item.yanked is not False:
        reason = item.yanked if isinstance(item.yanked, str) else ""
        attributes.append(f'data-yanked="{escape(reason)}"')
    if item.upload_time:
        attributes.append(f'data-upload-time="{item.upload_time}"')
    return f"    <a {' '.join(attributes)}>{escape(item.filename)}</a><br>\n"


def _json_file(name: NormalizedName, item: MirroredFile) -> dict[str, object]:
    entry: dict[str, object] = {"filename": item.filename, "url": _url(name, item),
                                "hashes": {"sha256": item.sha256}}
    if item.requires_python:
        entry["requires-python"] = item.requires_python
    if item.core_metadata:
        entry["core-metadata"] = {"sha256": item.core_metadata}
    entry["yanked"] = item.yanked
    if item.size is not None:
        entry["size"] = item.size
    if item.upload_time:
        entry["upload-time"] = item.upload_time
    return entry


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
