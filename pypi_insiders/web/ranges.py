"""Byte ranges of a file answer (RFC 9110 14): one range, as nginx serves the same file.

Clients use them for real: uv reads a wheel's METADATA with a few ranged reads when the page
offers no PEP 658 file (without them it downloads the whole wheel once to resolve and once
to install), and pip's `--resume-retries` resumes a cut download of a large wheel. Only a
single range is served; a request for several, or one we cannot parse, gets the whole file
(200), which RFC 9110 14.2 allows. `If-Range` is honoured with the strong ETag only: a date
cannot tell two files of one second apart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

ACCEPT_RANGES: Final = ("Accept-Ranges", "bytes")
_SPEC: Final = re.compile(r"bytes[ \t]*=[ \t]*(\d*)[ \t]*-[ \t]*(\d*)[ \t]*", re.IGNORECASE)
_DIGITS_MAX: Final = 19  # beyond any file size; keeps int() of a hostile header cheap


@dataclass(frozen=True, slots=True)
class ByteRange:
    """The bytes `first` to `last`, both included, of a file of `size` bytes."""

    first: int
    last: int
    size: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    @property
    def content_range(self) -> str:
        return f"bytes {self.first}-{self.last}/{self.size}"


class Unsatisfiable(Exception):  # noqa: N818 - an answer (416), not a failure
    """The range starts at or past the end of the file (or asks for zero bytes of its end)."""


def requested(environ: Mapping[str, Any], size: int, etag: str) -> ByteRange | None:
    """The one range a GET asks for; None for the whole file (no Range, several, malformed, or
    an `If-Range` that does not name this file's ETag). Raises Unsatisfiable for a 416."""
    header = environ.get("HTTP_RANGE")
    if not isinstance(header, str) or not header:
        return None
    if_range = environ.get("HTTP_IF_RANGE")
    if isinstance(if_range, str) and if_range and (not etag or if_range.strip() != etag):
        return None
    match = _SPEC.fullmatch(header)
    if match is None:
        return None
    first_text, last_text = match.groups()
    if len(first_text) > _DIGITS_MAX or len(last_text) > _DIGITS_MAX or not (first_text or last_text):
        return None
    return _within(first_text, last_text, size)


def _within(first_text: str, last_text: str, size: int) -> ByteRange | None:
    """`first-last`, `first-` or `-suffix` (RFC 9110 14.1.1) as bytes of this file."""
    if not first_text:  # the last N bytes
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            raise Unsatisfiable
        return ByteRange(max(size - suffix, 0), size - 1, size)
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None  # invalid: the whole file, as for any malformed range
    if first >= size:
        raise Unsatisfiable
    last = min(int(last_text), size - 1) if last_text else size - 1
    return ByteRange(first, last, size)
