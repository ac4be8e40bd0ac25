"""An upstream project page as the mirror keeps it: parsed once from JSON or HTML, stored as JSON.

We render every mirrored page ourselves, so upstream's markup is never passed on: only the
fields the simple API defines are kept (filename, absolute URL, sha256, size, upload-time,
requires-python, yanked, core-metadata hash). A file we cannot verify (no sha256), cannot
name (not a wheel or sdist), or should not fetch (a URL that is not http or https) is dropped.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from functools import cached_property
from html.parser import HTMLParser
from typing import Any, Final
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

from packaging.utils import NormalizedName

from pypi_insiders.mirror.layout import is_distribution, is_sha256
from pypi_insiders.store import parse_filename

_FRACTION: Final = re.compile(r"\.(\d+)")


class BadPageError(ValueError):
    """Upstream's bytes are no project page (or our stored copy is damaged)."""


@dataclass(frozen=True)
class MirroredFile:
    filename: str
    url: str  # absolute, upstream's, without credentials
    sha256: str
    version: str
    size: int | None = None
    upload_time: str | None = None  # PEP 700 form, to the microsecond
    requires_python: str | None = None
    yanked: bool | str = False  # a reason string is yanked too
    core_metadata: str | None = None  # sha256 of the `.metadata` file

    @cached_property
    def uploaded(self) -> float | None:
        """Seconds since the epoch, for the cooldown (parsed once per file, not per answer)."""
        return None if self.upload_time is None else parse_time(self.upload_time)


@dataclass(frozen=True)
class MirroredPage:
    name: NormalizedName
    files: tuple[MirroredFile, ...]
    fetched_at: float  # time.time() of the last 200 or 304
    etag: str = ""
    last_serial: int | None = None

    def find(self, sha256: str, filename: str) -> MirroredFile | None:
        return next((f for f in self.files if f.sha256 == sha256 and f.filename == filename), None)

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    def touched(self, fetched_at: float) -> MirroredPage:
        return replace(self, fetched_at=fetched_at)


def from_bytes(data: bytes) -> MirroredPage:
    try:
        raw = json.loads(data)
        files = tuple(MirroredFile(**entry) for entry in raw.pop("files"))
        return MirroredPage(files=files, **raw)
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        msg = f"damaged mirrored page: {error}"
        raise BadPageError(msg) from None


def parse_time(text: str) -> float:
    """PEP 700's `yyyy-mm-ddThh:mm:ss[.ffffff]Z` (any fraction length), in seconds."""
    text = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text.strip())
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def format_time(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _entry(filename: str, url: str, fields: dict[str, Any]) -> MirroredFile | None:
    """One file, or None when it cannot be mirrored safely."""
    url, fragment = urldefrag(url)
    sha = fields.get("sha256") or (fragment[7:] if fragment.startswith("sha256=") else "")
    if not is_distribution(filename) or not is_sha256(str(sha).lower()):
        return None
    if urlsplit(url).scheme not in ("http", "https") or urlsplit(url).username is not None:
        return None
    upload = fields.get("upload_time")
    try:
        upload = format_time(parse_time(upload)) if isinstance(upload, str) and upload else None
    except ValueError:
        upload = None
    size = fields.get("size")
    core = fields.get("core_metadata")
    return MirroredFile(
        filename=filename, url=url, sha256=str(sha).lower(),
        version=str(parse_filename(filename).version),
        size=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
        upload_time=upload,
        requires_python=fields.get("requires_python") or None,
        yanked=_yanked(fields.get("yanked")),
        core_metadata=core if isinstance(core, str) and is_sha256(core) else None)


def _yanked(value: object) -> bool | str:
    if isinstance(value, str):
        return value or True
    return bool(value)


def _metadata_hash(value: object) -> str | None:
    """PEP 714 `core-metadata` (or the older name): a hash object, `sha256=...`, or true."""
    if isinstance(value, dict):
        found = value.get("sha256")
        return found.lower() if isinstance(found, str) else None
    if isinstance(value, str) and value.startswith("sha256="):
        return value[7:].lower()
    return None


def from_json(name: NormalizedName, body: bytes, base: str, fetched_at: float) -> MirroredPage:
    try:
        data = json.loads(body)
    except ValueError as error:
        msg = f"unparseable JSON: {error}"
        raise BadPageError(msg) from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), list) \
            or not isinstance(data.get("meta"), dict):
        msg = "not an index page: JSON without a meta object and a files list"
        raise BadPageError(msg)
    files = []
    for entry in data["files"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str) \
                or not isinstance(entry.get("filename"), str):
            continue
        hashes = entry.get("hashes")
        hashes = hashes if isinstance(hashes, dict) else {}
        requires = entry.get("requires-python")
        core = entry.get("core-metadata", entry.get("dist-info-metadata"))
        fields = {"sha256": hashes.get("sha256"), "size": entry.get("size"),
                  "upload_time": entry.get("upload-time"), "yanked": entry.get("yanked"),
                  "requires_python": requires if isinstance(requires, str) else None,
                  "core_metadata": _metadata_hash(core)}
        found = _entry(entry["filename"], urljoin(base, entry["url"]), fields)
        if found is not None:
            files.append(found)
    return MirroredPage(name, tuple(files), fetched_at)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[dict[str, str | None], list[str]]] = []
        self.base: str | None = None
        self.tags = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("html", "body", "a"):
            self.tags += 1
        if tag == "base" and self.base is None:
            self.base = dict(attrs).get("href")
        elif tag == "a":
            self.links.append((dict(attrs), []))

    def handle_data(self, data: str) -> None:
        if self.links:
            self.links[-1][1].append(data)


def from_html(name: NormalizedName, text: str, base: str, fetched_at: float) -> MirroredPage:
    parser = _Links()
    parser.feed(text)
    parser.close()
    if not parser.tags:
        msg = "not an index page: no <html>, <body> or <a> element"
        raise BadPageError(msg)
    base = urljoin(base, parser.base or "")
    files = []
    for attrs, _text in parser.links:
        href = attrs.get("href")
        if not href:
            continue
        url = urljoin(base, href)
        filename = unquote(urlsplit(url).path.rpartition("/")[2])
        yanked = attrs.get("data-yanked")
        fields = {"upload_time": attrs.get("data-upload-time"),
                  "requires_python": attrs.get("data-requires-python"),
                  "yanked": False if yanked is None else (yanked or True),
                  "core_metadata": _metadata_hash(attrs.get("data-core-metadata",
                                                            attrs.get("data-dist-info-metadata")))}
        found = _entry(filename, url, fields)
        if found is not None:
            files.append(found)
    return MirroredPage(name, tuple(files), fetched_at)
