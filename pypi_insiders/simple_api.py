"""The simple repository API (PEP 503, 691, 700, 714): one spelling for every stage.

The index writes these into its pages, the web negotiates them, the fetch stage and the
fallback ask upstream for them. A file's link is written here too, for the local pages and
the mirror's alike, so the two never disagree on an attribute.
"""

from __future__ import annotations

from html import escape
from typing import Final

API_VERSION: Final = "1.1"  # PEP 700: upload-time, versions, size
HTML_MEDIA_TYPE: Final = "text/html"
V1_HTML_MEDIA_TYPE: Final = "application/vnd.pypi.simple.v1+html"
V1_JSON_MEDIA_TYPE: Final = "application/vnd.pypi.simple.v1+json"
LATEST_PREFIX: Final = "application/vnd.pypi.simple.latest+"


def html_link(url: str, filename: str, *, requires_python: str | None, core_metadata: str | None,
              yanked: str | None, upload_time: str | None = None) -> str:
    """One PEP 503 anchor. `yanked`: None, or the reason ("" for none given). The metadata hash
    goes under both PEP 714 names: pip before 22.3 knows only the old one."""
    attributes = [f'href="{escape(url)}"']
    if requires_python:
        attributes.append(f'data-requires-python="{escape(requires_python)}"')
    if core_metadata:
        value = f"sha256={core_metadata}"
        attributes.append(f'data-core-metadata="{value}" data-dist-info-metadata="{value}"')
    if yanked is not None:
        attributes.append(f'data-yanked="{escape(yanked)}"')
    if upload_time:
        attributes.append(f'data-upload-time="{upload_time}"')  # read by uv's --exclude-newer
    return f"    <a {' '.join(attributes)}>{escape(filename)}</a><br>\n"


def json_file(url: str, filename: str, sha256: str | None, *, requires_python: str | None,
              core_metadata: str | None, yanked: str | None, size: int | None,
              upload_time: str | None) -> dict[str, object]:
    """One PEP 691 file entry; `yanked` as for `html_link`."""
    entry: dict[str, object] = {"filename": filename, "url": url, "hashes": {"sha256": sha256}}
    if requires_python:
        entry["requires-python"] = requires_python
    if core_metadata:
        # PEP 714 allows the old name only in HTML: pip 22.3 to 23.1 (bookworm ships 23.0.1)
        # crash on a JSON "dist-info-metadata" object.
        entry["core-metadata"] = {"sha256": core_metadata}
    entry["yanked"] = False if yanked is None else (yanked or True)
    if size is not None:
        entry["size"] = size
    if upload_time:
        entry["upload-time"] = upload_time
    return entry
