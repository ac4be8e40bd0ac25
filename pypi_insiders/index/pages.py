"""The bytes of the index pages: PEP 503 HTML and PEP 691 JSON, from cached file records.

Pure functions of their inputs, so a page is a function of the store and the yank settings
and nothing else (no clock), and an unchanged project renders to the same bytes. URLs are
relative (`../../packages/...`) so the same tree works at any prefix, behind any server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from urllib.parse import quote

from packaging.utils import NormalizedName
from packaging.version import InvalidVersion, Version

from pypi_insiders.index.layout import FILE_LINK_PREFIX
from pypi_insiders.index.metadata_cache import FileRecord
from pypi_insiders.simple_api import API_VERSION, html_link, json_file

_META = f'<meta name="pypi:repository-version" content="{API_VERSION}">'
TRACKS_API_VERSION = "1.2"  # PEP 708 added `tracks` in version 1.2 of the simple API
_META_708 = f'<meta name="pypi:repository-version" content="{TRACKS_API_VERSION}">'


def normalize_version_key(text: str) -> str:
    """A yank key as written in the config, in the form file versions are stored in."""
    try:
        return str(Version(text))
    except InvalidVersion:
        return text


def yank_reasons(configured: Mapping[str, str]) -> dict[str, str]:
    return {normalize_version_key(version): reason for version, reason in configured.items()}


def upload_time(ns: int) -> str:
    """ISO 8601 in UTC with a "Z", as PEP 700 asks, to the microsecond."""
    seconds, rest = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rest // 1000:06d}Z"


def file_url(record: FileRecord) -> str:
    return f"{FILE_LINK_PREFIX}{quote(record.relpath)}#sha256={record.sha256}"


def _sort_key(record: FileRecord) -> tuple[Version, str]:
    return Version(record.version or "0"), record.filename


def _html_link(record: FileRecord, yanked: Mapping[str, str]) -> str:
    return html_link(file_url(record), record.filename, requires_python=record.requires_python,
                     core_metadata=record.metadata_sha256, yanked=yanked.get(record.version or ""))


def _json_file(record: FileRecord, yanked: Mapping[str, str]) -> dict[str, object]:
    return json_file(file_url(record), record.filename, record.sha256,
                     requires_python=record.requires_python, core_metadata=record.metadata_sha256,
                     yanked=yanked.get(record.version or ""), size=record.size,
                     upload_time=upload_time(record.upload_time_ns))


def project_pages(project: NormalizedName, files: Sequence[FileRecord],
                  yanked: Mapping[str, str], tracks: str | None = None) -> tuple[bytes, bytes]:
    """(HTML, JSON) of one project page; `yanked` maps normalized versions to reasons.

    `tracks`: the upstream project these are Insiders builds of (PEP 708), for `public_projects`.
    """
    keyed = sorted(((_sort_key(record), record) for record in files), key=lambda pair: pair[0])
    ordered = [record for _key, record in keyed]
    name = escape(project)
    meta = _META if tracks is None else (f'{_META_708}\n    <meta name="pypi:tracks" '
                                         f'content="{escape(tracks)}">')
    html = (f"<!DOCTYPE html>\n<html>\n  <head>\n    {meta}\n    <title>Links for {name}</title>\n"
            f"  </head>\n  <body>\n    <h1>Links for {name}</h1>\n"
            + "".join(_html_link(record, yanked) for record in ordered)
            + "  </body>\n</html>\n")
    versions = sorted({version for (version, _filename), _record in keyed})
    document: dict[str, object] = {
        "meta": {"api-version": API_VERSION if tracks is None else TRACKS_API_VERSION},
        "name": project,
        "files": [_json_file(record, yanked) for record in ordered],
        "versions": [str(v) for v in versions],
    }
    if tracks is not None:
        document["tracks"] = [tracks]
    return html.encode(), json.dumps(document, separators=(",", ":")).encode()


def root_pages(projects: Iterable[NormalizedName]) -> tuple[bytes, bytes]:
    """(HTML, JSON) of the root list.

    Names are normalized PEP 508 names (letters, digits, "-"), checked when each file was read,
    so they need no escaping: at 20,000 projects escaping was most of the cost of this page.
    """
    names = list(projects)
    html = (f"<!DOCTYPE html>\n<html>\n  <head>\n    {_META}\n    <title>Simple index</title>\n"
            "  </head>\n  <body>\n"
            + "".join(f'    <a href="{n}/">{n}</a><br>\n' for n in names)
            + "  </body>\n</html>\n")
    document = {"meta": {"api-version": API_VERSION}, "projects": [{"name": n} for n in names]}
    return html.encode(), json.dumps(document, separators=(",", ":")).encode()


def home_page(projects: int, files: int, latest: Sequence[FileRecord]) -> bytes:
    """The human page at "/": what this index holds and what arrived last."""
    rows = "".join(
        f'      <li><a href="project/{escape(quote(r.project or ""))}/">{escape(r.project or "")}</a> '
        f"{escape(r.filename)} <small>{upload_time(r.upload_time_ns)[:19].replace('T', ' ')} UTC"
        "</small></li>\n" for r in latest)
    latest_html = f"    <h2>Latest files</h2>\n    <ul>\n{rows}    </ul>\n" if latest else ""
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n    <meta charset=\"utf-8\">\n"
        "    <title>pypi-insiders</title>\n  </head>\n  <body>\n    <h1>pypi-insiders</h1>\n"
        f"    <p>This index serves {files} file{'s' if files != 1 else ''} of {projects} "
        f"project{'s' if projects != 1 else ''}.</p>\n"
        '    <p>Install with <code>pip install --index-url &lt;this address&gt;/simple/ NAME</code>; '
        'browse <a href="project/">the projects</a> or the <a href="simple/">simple index</a>, '
        'or see the <a href="status">fetcher status</a>.'
        "</p>\n" + latest_html + "  </body>\n</html>\n"
    ).encode()
