"""The human page of one project, `/project/NAME/`: its releases, files, sizes, upload times,
yanked state, and for a file the fetcher built, the repository, tag and commit it came from;
and `/project/`, the projects the caller may read.

Rendered per request from the project's generated JSON page (`index_visibility`), which holds
all of it but the origin, read from `provenance`. The links are relative, like the simple
pages' (`../../packages/...` from the same depth), so the page works behind any prefix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from html import escape
from pathlib import Path
from typing import Any

from packaging.utils import NormalizedName
from packaging.version import Version

from pypi_insiders.errors import InvalidDistributionError
from pypi_insiders.provenance import Origin, Provenance
from pypi_insiders.store import parse_filename
from pypi_insiders.web.index_visibility import IndexView

PAGE_URL = "/project/"
_STYLE = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
          "td,th{padding:.2em .8em;text-align:left;border-bottom:1px solid #ddd}"
          ".yanked{color:#a00}small{color:#555}")


def size_text(size: object) -> str:
    if not isinstance(size, int):
        return "?"
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 1024 / 1024:.1f} MiB"


def _version(filename: str) -> Version | None:
    try:
        return parse_filename(filename).version
    except InvalidDistributionError:
        return None


def _releases(files: Iterable[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Files grouped by release, newest first."""
    groups: dict[Version | None, list[dict[str, Any]]] = {}
    for entry in files:
        groups.setdefault(_version(str(entry.get("filename", ""))), []).append(entry)
    ordered = sorted((v for v in groups if v is not None), reverse=True)
    out = [(str(v), sorted(groups[v], key=lambda f: str(f.get("filename")))) for v in ordered]
    return out + ([("?", groups[None])] if None in groups else [])


def _yanked(entry: dict[str, Any]) -> str:
    reason = entry.get("yanked")
    if reason is False or reason is None:
        return ""
    text = f": {escape(str(reason))}" if isinstance(reason, str) and reason else ""
    return f'<span class="yanked">yanked{text}</span>'


def _origin(origin: Origin | None) -> str:
    if origin is None:
        return "uploaded or added by hand"
    return (f"built from <code>{escape(origin.url)}</code> tag <code>{escape(origin.tag)}</code> "
            f"commit <code>{escape(origin.commit[:12])}</code>")


def _row(entry: dict[str, Any], origin: Origin | None) -> str:
    filename = escape(str(entry.get("filename", "")))
    url = escape(str(entry.get("url", "")), quote=True)
    uploaded = escape(str(entry.get("upload-time", ""))[:19].replace("T", " "))
    return (f'      <tr><td><a href="{url}">{filename}</a></td><td>{size_text(entry.get("size"))}</td>'
            f"<td>{uploaded} UTC</td><td>{_yanked(entry)}</td>"
            f"<td><small>{_origin(origin)}</small></td></tr>\n")


def _release(version: str, files: list[dict[str, Any]], origin_of: Callable[[str], Origin | None]) -> str:
    yanked = all(f.get("yanked") not in (False, None) for f in files)
    mark = ' <span class="yanked">(yanked)</span>' if yanked else ""
    rows = "".join(_row(f, origin_of(str(f.get("filename", "")))) for f in files)
    return (f'    <h2 id="{escape(version, quote=True)}">{escape(version)}{mark}</h2>\n    <table>\n'
            "      <tr><th>file</th><th>size</th><th>uploaded</th><th>yanked</th><th>origin</th></tr>\n"
            f"{rows}    </table>\n")


def render(project: NormalizedName, files: list[dict[str, Any]],
           origin_of: Callable[[str], Origin | None]) -> bytes:
    releases = _releases(files)
    name = escape(project)
    versions = ", ".join(f'<a href="#{escape(v, quote=True)}">{escape(v)}</a>' for v, _f in releases)
    body = "".join(_release(version, group, origin_of) for version, group in releases)
    return (f'<!DOCTYPE html>\n<html>\n  <head>\n    <meta charset="utf-8">\n    <title>{name}</title>\n'
            f"    <style>{_STYLE}</style>\n  </head>\n  <body>\n    <h1>{name}</h1>\n"
            f'    <p>Install with <code>pip install --index-url &lt;this address&gt;/simple/ {name}</code>; '
            f'the <a href="../../simple/{name}/">simple page</a>, <a href="../../">all projects</a>.</p>\n'
            f"    <p>Releases: {versions}</p>\n{body}  </body>\n</html>\n").encode()


def listing(names: Iterable[str]) -> bytes:
    """`/project/`: every project the caller may read, each linked to its page."""
    shown = sorted(names)
    items = "".join(f'      <li><a href="{escape(n, quote=True)}/">{escape(n)}</a></li>\n' for n in shown)
    listed = f"    <ul>\n{items}    </ul>\n" if shown else "    <p>No local project is yours to read.</p>\n"
    return ('<!DOCTYPE html>\n<html>\n  <head>\n    <meta charset="utf-8">\n    <title>Projects</title>\n'
            f"  </head>\n  <body>\n    <h1>Projects</h1>\n{listed}  </body>\n</html>\n").encode()


class ProjectPages:
    """The pages of one index and state directory; who may read which is the app's business."""

    def __init__(self, index_dir: Path, state_dir: Path) -> None:
        self.index = IndexView(index_dir)
        self.provenance = Provenance(state_dir)

    def body(self, project: NormalizedName) -> bytes | None:
        """The page, or None when the index holds no file of the project."""
        files = self.index.files(project)
        return render(project, files, self.provenance.of) if files else None
