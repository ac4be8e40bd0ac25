"""The core-metadata header reader against the email package, the reference it replaces.

The index reads Name, Version and Requires-Python with `metadata.header_fields` (the email
parser cost a fifth of a cold start's time per file). Whatever the header block, the two must
agree on those fields, so a file is never listed under another name than the email package
(and so pip) reads from it.
"""

from __future__ import annotations

import email.parser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pypi_insiders.errors import InvalidDistributionError
from pypi_insiders.metadata import header_fields, parse_core_metadata

WANTED = ("name", "version", "requires-python")


def _as_used(found: dict[str, str]) -> dict[str, str]:
    """Values as the index uses them: stripped, whatever the line breaks inside a folded one."""
    return {k: v.replace("\r\n", "\n").strip() for k, v in found.items()}


def _reference(raw: bytes) -> dict[str, str]:
    message = email.parser.BytesParser().parsebytes(raw, headersonly=True)
    found: dict[str, str] = {}
    for key in WANTED:
        value = message.get(key)
        if value is not None:
            found[key] = str(value)
    return found


_keys = st.sampled_from(["Name", "name", "NAME", "Version", "version", "Requires-Python",
                         "requires-python", "Summary", "Metadata-Version", "Requires-Dist"])
_values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=20)
_header = st.tuples(_keys, _values, st.lists(_values.map(lambda v: " " + v), max_size=2))
_newline = st.sampled_from(["\n", "\r\n"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_header, max_size=8), _newline, st.sampled_from(["", "\n", "\nBody: Name: x\n"]))
def test_metadata_headers_agree_with_the_email_package(headers: list[tuple[str, str, list[str]]],
                                                       newline: str, body: str) -> None:
    lines = []
    for key, value, folds in headers:
        lines.append(f"{key}: {value}".rstrip())
        lines += [fold.rstrip() for fold in folds if fold.strip()]
    raw = (newline.join(lines) + newline + body.replace("\n", newline)).encode()
    assert _as_used(header_fields(raw, WANTED)) == _as_used(_reference(raw))


@pytest.mark.parametrize(("raw", "expected"), [
    (b"Metadata-Version: 2.1\nName: Foo\nVersion: 1.0\n", {"name": "Foo", "version": "1.0"}),
    (b"name: foo\nNAME: bar\nversion: 2\n", {"name": "foo", "version": "2"}),  # first wins
    (b"Name: foo\n\nVersion: 1.0\n", {"name": "foo"}),  # the body is not headers
    (b"Name: foo\nnot a header\nVersion: 1.0\n", {"name": "foo"}),  # nor what follows junk
    (b"Name: foo\r\nVersion: 1.0\r\n\r\nVersion: 9\r\n", {"name": "foo", "version": "1.0"}),
    (b"Requires-Python:\n  >=3.8\nName: x\n", {"requires-python": "\n  >=3.8", "name": "x"}),
])
def test_metadata_headers_read_like_rfc_822(raw: bytes, expected: dict[str, str]) -> None:
    assert header_fields(raw, WANTED) == expected
    assert _as_used(header_fields(raw, WANTED)) == _as_used(_reference(raw))


def test_metadata_without_name_or_version_is_refused_naming_the_file() -> None:
    with pytest.raises(InvalidDistributionError, match=r"^x-1\.0\.tar\.gz: metadata has no Name"):
        parse_core_metadata(b"Summary: nothing\n", "x-1.0.tar.gz")
