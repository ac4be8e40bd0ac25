"""Upstream pages relayed by the proxy, with every file URL made absolute.

Upstream's pages link files relative to themselves; served from our URL those links would
point at us. Rewritten against upstream's page URL, pip and uv download files from upstream
directly, while hashes, requires-python, yanked and metadata attributes pass through untouched.
"""

from __future__ import annotations

import json
from html import escape
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin


class _Absolutizer(HTMLParser):
    """Re-emits an HTML page with every href made absolute; all other attributes kept as they are."""

    def __init__(self, base: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base = base
        self.out: list[str] = []

    def _tag(self, tag: str, attrs: list[tuple[str, str | None]], close: str) -> None:
        if tag == "base":
            self.base = urljoin(self.base, dict(attrs).get("href") or "")
            return
        rendered = []
        for key, value in attrs:
            if value is None:
                rendered.append(f" {key}")
                continue
            text = urljoin(self.base, value) if key == "href" else value
            rendered.append(f' {key}="{escape(text)}"')
        self.out.append(f"<{tag}{''.join(rendered)}{close}>")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, attrs, "")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, attrs, " /")

    def handle_endtag(self, tag: str) -> None:
        self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        self.out.append(escape(data, quote=False))

    def handle_decl(self, decl: str) -> None:
        self.out.append(f"<!{decl}>")


def absolute_html(page: str, base: str) -> str:
    parser = _Absolutizer(base)
    parser.feed(page)
    parser.close()
    return "".join(parser.out)


def absolute_json(page: bytes, base: str) -> str:
    data: dict[str, Any] = json.loads(page)
    for entry in data.get("files", []):
        if isinstance(entry, dict) and isinstance(entry.get("url"), str):
            entry["url"] = urljoin(base, entry["url"])
    return json.dumps(data, separators=(",", ":"))
