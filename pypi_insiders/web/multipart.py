"""A streaming multipart/form-data reader for the upload API: text fields in memory, the file to disk.

The stdlib's `cgi` module is gone in Python 3.13 and `email.parser` wants the whole body in
memory; an upload may be a hundred megabytes. So the body is scanned in chunks, the one file
part goes straight to a hidden temporary file (the watcher ignores names starting with "."),
hashed on the way, and every limit is enforced while the bytes arrive. Any malformed body is an
UploadError(400) and leaves no file behind.
"""

from __future__ import annotations

import email.message
import email.parser
import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from pypi_insiders.errors import UploadError

_CHUNK = 64 * 1024
_MAX_HEADERS = 16 * 1024
_MAX_PREAMBLE = 64 * 1024
FILE_FIELD = "content"
_HEADER_LINE = re.compile(r"[!-9;-~]+:")

Sink = Callable[[bytes], None]


class _Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...


class BodyReader:
    """wsgi.input bounded by Content-Length; a body that ends early is an error, never a short file."""

    def __init__(self, stream: BinaryIO, length: int) -> None:
        self.stream = stream
        self.remaining = length

    def read(self, size: int) -> bytes:
        if self.remaining <= 0:
            return b""
        data = self.stream.read(min(size, self.remaining))
        if not data:
            raise UploadError(400, f"request body ended {self.remaining} bytes before its Content-Length")
        self.remaining -= len(data)
        return data


@dataclass
class FilePart:
    filename: str
    path: Path
    size: int = 0
    digests: dict[str, str] = field(default_factory=dict)  # form field name -> hex digest


@dataclass
class Form:
    fields: dict[str, list[str]] = field(default_factory=dict)
    file: FilePart | None = None

    def get(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[0] if values else None

    def discard(self) -> None:
        if self.file is not None:
            self.file.path.unlink(missing_ok=True)


def boundary_of(content_type: str) -> bytes:
    message = email.message.Message()
    message["Content-Type"] = content_type
    boundary = message.get_param("boundary")
    if message.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
        raise UploadError(400, "the body must be multipart/form-data with a boundary")
    if not 1 <= len(boundary) <= 70 or not boundary.isascii():
        raise UploadError(400, "malformed multipart body: invalid boundary")
    return boundary.encode()


class _Scanner:
    def __init__(self, reader: BodyReader) -> None:
        self.reader = reader
        self.buffer = b""

    def _fill(self, what: str) -> None:
        data = self.reader.read(_CHUNK)
        if not data:
            raise UploadError(400, f"malformed multipart body: it ends inside {what}")
        self.buffer += data

    def peek(self, size: int, what: str) -> bytes:
        while len(self.buffer) < size:
            self._fill(what)
        return self.buffer[:size]

    def read_exact(self, size: int, what: str) -> bytes:
        data = self.peek(size, what)
        self.buffer = self.buffer[size:]
        return data

    def read_until(self, marker: bytes, sink: Sink, what: str) -> None:
        """Everything before `marker` goes to `sink`, the marker itself is consumed."""
        keep = len(marker) - 1
        while True:
            found = self.buffer.find(marker)
            if found >= 0:
                sink(self.buffer[:found])
                self.buffer = self.buffer[found + len(marker):]
                return
            if len(self.buffer) > keep:
                sink(self.buffer[:-keep])
                self.buffer = self.buffer[-keep:]
            self._fill(what)


def _bounded(limit: int, status: int, message: str, out: bytearray) -> Sink:
    def sink(data: bytes) -> None:
        if len(out) + len(data) > limit:
            raise UploadError(status, message)
        out.extend(data)
    return sink


def _part_headers(raw: bytes) -> email.message.Message:
    """Strict on form: every line a `Name: value` header, so a lost boundary cannot hide in here."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UploadError(400, "malformed multipart body: part headers are not UTF-8") from None
    lines = text.split("\r\n") if text else []
    if any(not _HEADER_LINE.match(line) for line in lines):
        raise UploadError(400, "malformed multipart body: a part header line is not `Name: value`")
    return email.parser.HeaderParser().parsestr(text + "\r\n\r\n")


class _FileSink:
    """Writes the file part to a hidden temporary file, hashing it and enforcing the size limit."""

    def __init__(self, directory: Path, filename: str, max_size: int) -> None:
        fd, name = tempfile.mkstemp(prefix=".upload-", suffix=".part", dir=directory)
        self.out = os.fdopen(fd, "wb")
        self.part = FilePart(filename, Path(name))
        self.max_size = max_size
        self.hashes: dict[str, _Digest] = {
            "md5_digest": hashlib.md5(usedforsecurity=False),
            "sha256_digest": hashlib.sha256(),
            "blake2_256_digest": hashlib.blake2b(digest_size=32),
        }

    def __call__(self, data: bytes) -> None:
        self.part.size += len(data)
        if self.part.size > self.max_size:
            raise UploadError(413, f"file larger than the upload limit of {self.max_size} bytes")
        self.out.write(data)
        for digest in self.hashes.values():
            digest.update(data)

    def finish(self) -> FilePart:
        self.out.close()
        self.part.digests = {name: digest.hexdigest() for name, digest in self.hashes.items()}
        return self.part


class Parser:
    """One request body; `check_filename` refuses a bad name before a single file byte is written."""

    def __init__(self, reader: BodyReader, boundary: bytes, *, spool_dir: Path, max_file: int,
                 max_fields: int, check_filename: Callable[[str], None]) -> None:
        self.scanner = _Scanner(reader)
        self.delimiter = b"\r\n--" + boundary
        self.spool_dir, self.max_file = spool_dir, max_file
        self.check_filename = check_filename
        self.field_budget = max_fields
        self.form = Form()

    def parse(self) -> Form:
        try:
            self._parse()
        except BaseException:
            if self.form.file is not None:
                self.form.file.path.unlink(missing_ok=True)
            raise
        return self.form

    def _parse(self) -> None:
        preamble = bytearray()
        self.scanner.read_until(self.delimiter[2:], _bounded(_MAX_PREAMBLE, 400, "malformed multipart "
                                "body: no opening boundary", preamble), "the preamble")
        while True:
            after = self.scanner.read_exact(2, "a boundary")
            if after == b"--":
                return
            if after != b"\r\n":
                raise UploadError(400, "malformed multipart body: garbage after a boundary")
            self._part()

    def _part(self) -> None:
        raw = bytearray()
        if self.scanner.peek(2, "part headers") == b"\r\n":
            self.scanner.read_exact(2, "part headers")  # a part with no headers at all
        else:
            sink = _bounded(_MAX_HEADERS, 400, "malformed multipart body: part headers too long", raw)
            self.scanner.read_until(b"\r\n\r\n", sink, "part headers")
        headers = _part_headers(bytes(raw))
        name = headers.get_param("name", header="content-disposition")
        filename = headers.get_filename()
        if not isinstance(name, str) or headers.get_content_disposition() != "form-data":
            raise UploadError(400, "malformed multipart body: a part without a form-data name")
        if name == FILE_FIELD and filename is not None:
            self._file(filename)
        elif filename is not None:
            self._field(name, keep=False)  # e.g. twine's gpg_signature: nothing we use
        else:
            self._field(name)

    def _field(self, name: str, *, keep: bool = True) -> None:
        value = bytearray()
        sink = _bounded(self.field_budget, 413, "form fields larger than the upload limit allows", value)
        self.scanner.read_until(self.delimiter, sink, f"field {name!r}")
        self.field_budget -= len(value)
        if not keep:
            return
        try:
            self.form.fields.setdefault(name, []).append(value.decode("utf-8"))
        except UnicodeDecodeError:
            raise UploadError(400, f"form field {name!r} is not UTF-8") from None

    def _file(self, filename: str) -> None:
        if self.form.file is not None:
            raise UploadError(400, f"more than one file in field {FILE_FIELD!r}")
        self.check_filename(filename)
        try:
            sink = _FileSink(self.spool_dir, filename, self.max_file)
        except OSError as error:
            raise UploadError(500, f"cannot store the upload: {error.strerror}") from None
        self.form.file = sink.part
        try:
            self.scanner.read_until(self.delimiter, sink, f"file {filename!r}")
        except OSError as error:  # the disk filled up or went away under us
            raise UploadError(500, f"cannot store the upload: {error.strerror}") from None
        finally:
            sink.finish()
