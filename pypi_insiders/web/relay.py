"""Upstream pages relayed by the proxy, checked to be index pages, with every file URL absolute.

Upstream's pages link files relative to themselves; served from our URL those links would
point at us. Rewritten against upstream's page URL, pip and uv download files from upstream
directly, while hashes, requires-python, yanked and metadata attributes pass through untouched.

What is relayed must be a whole index page: a client resolves against it, so a page cut short
or bytes that are no page at all are refused (`InvalidPageError`) rather than served as a 200.
A body cut short against its Content-Length or chunking is caught by the HTTP client; one
delimited only by the connection's close is whole only if the document ends.
"""

from __future__ import annotations

import json
import re
from html import escape
from html.parser import HTMLParser
from typing import Final
from urllib.parse import urljoin

_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")  # never in a text page; in binary data always
_PAGE_TAGS: Final = frozenset({"html", "body", "a"})


class InvalidPageError(ValueError):
    """Upstream's bytes are not a (whole) simple index page; the message says what is wrong."""


class _Absolutizer(HTMLParser):
    """Re-emits an HTML page with every href made absolute; all other attributes kept as they are."""

    def __init__(self, base: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base = base
        self.out: list[str] = []
        self.tags: set[str] = set()  # of the page's structure: html, body, a
        self.ended = False  # </html> seen

    def _tag(self, tag: str, attrs: list[tuple[str, str | None]], close: str) -> None:
        if tag in _PAGE_TAGS:
            self.tags.add(tag)
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
        self.ended = self.ended or tag == "html"
        self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        self.out.append(escape(data, quote=False))

    def handle_decl(self, decl: str) -> None:
        self.out.append(f"<!{decl}>")


def absolute_html(page: str, base: str) -> str:
    return "".join(_parse(page, base).out)


def _parse(page: str, base: str) -> _Absolutizer:
    parser = _Absolutizer(base)
    parser.feed(page)
    parser.close()
    return parser


def html_page(body: bytes, base: str, charset: str, *, framed: bool) -> str:
    """The page with absolute links; `framed`: its length was known, so it cannot be cut short unseen."""
    try:
        page = body.decode(charset)
    except UnicodeDecodeError as error:
        msg = f"not HTML: byte {error.start} is not {charset}"
        raise InvalidPageError(msg) from None
    except LookupError:
        msg = f"not HTML: unknown charset {charset!r}"
        raise InvalidPageError(msg) from None
    if found := _CONTROL.search(page):
        msg = f"not HTML: binary data (control character {ord(found.group()):#04x} at {found.start()})"
        raise InvalidPageError(msg)
    parsed = _parse(page, base)
    if not parsed.tags:
        msg = "not an index page: no <html>, <body> or <a> element"
        raise InvalidPageError(msg)
    if not framed and "html" in parsed.tags and not parsed.ended:
        msg = "short read: the page ends before </html> (connection closed, no Content-Length)"
        raise InvalidPageError(msg)
    return "".join(parsed.out)


def json_page(body: bytes, base: str) -> str:
    """A PEP 691 project page with absolute file URLs; anything else is refused."""
    try:
        data = json.loads(body)
    except ValueError as error:  # UnicodeDecodeError included
        msg = f"unparseable JSON: {error}"
        raise InvalidPageError(msg) from None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list) or not isinstance(data.get("meta"), dict):
        msg = "not an index page: JSON without a meta object and a files list"
        raise InvalidPageError(msg)
    for number, entry in enumerate(files):
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str) \
                or not isinstance(entry.get("filename"), str):
            msg = f"not an index page: files[{number}] has no filename and url"
            raise InvalidPageError(msg)
        entry["url"] = urljoin(base, entry["url"])
    return json.dumps(data, separators=(",", ":"))
