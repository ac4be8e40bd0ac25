"""A stand-in upstream index for the mirror benchmark: every file in a directory of wheels,
as PEP 691 JSON (with PEP 700 size and upload-time, from the file's mtime) or HTML pages, the
files sent with wsgi.file_wrapper, and `/-/count` saying how many file requests it served.
With `pep658` after the static directory, each wheel's METADATA is offered as a PEP 658 file
(`<wheel>.metadata`, written beside it), as the real upstream does, so installers resolve
from those small files, through a mirror too. It is off by default: bookworm's pip 23.0.1
rejects the metadata of some current wheels ("inconsistent Name": `Name: mypy_extensions`
for the project mypy-extensions), whoever serves it.

    python -m bench.mirror_upstream WHEELS_DIR PORT [STATIC_DIR [pep658]]
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from waitress import serve

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


def _project(filename: str) -> str:
    if filename.endswith(".whl"):
        return str(parse_wheel_filename(filename)[0])
    return str(parse_sdist_filename(filename)[0])


class StandIn:
    def __init__(self, directory: Path, *, pep658: bool = False) -> None:
        self.directory = directory
        self.files: dict[str, list[tuple[str, str, int, float]]] = defaultdict(list)
        self.metadata: dict[str, str] = {}  # wheel filename -> its METADATA's sha256
        for path in sorted(directory.iterdir()):
            if path.suffix in (".whl", ".gz", ".zip"):
                digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.stat().st_size < 2**27 \
                    else _sha256_file(path)
                stat = path.stat()
                self.files[canonicalize_name(_project(path.name))].append(
                    (path.name, digest, stat.st_size, stat.st_mtime))
                if pep658 and path.suffix == ".whl" and (metadata := _metadata(path)) is not None:
                    self.metadata[path.name] = metadata
        self.served = 0
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        parts = environ["PATH_INFO"].strip("/").split("/")
        if parts == ["-", "count"]:
            body = json.dumps({"files": self.served}).encode()
            start_response("200 OK", [("Content-Type", "application/json"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        if parts == ["simple"]:  # the root list: devpi asks for it before a project
            return self._root("json" in environ.get("HTTP_ACCEPT", ""), start_response)
        if len(parts) == 2 and parts[0] == "simple" and parts[1] in self.files:
            return self._page(parts[1], "json" in environ.get("HTTP_ACCEPT", ""), start_response)
        if len(parts) == 2 and parts[0] == "files" and (self.directory / parts[1]).is_file():
            with self.lock:
                self.served += not parts[1].endswith(".metadata")
            path = self.directory / parts[1]
            start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                      ("Content-Length", str(path.stat().st_size))])
            stream = path.open("rb")
            wrapper = environ.get("wsgi.file_wrapper")
            return wrapper(stream, 256 * 1024) if wrapper else iter(lambda: stream.read(256 * 1024), b"")
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "0")])
        return [b""]

    def _root(self, as_json: bool, start_response: Callable[..., Any]) -> Iterable[bytes]:
        names = sorted(self.files)
        if as_json:
            body = json.dumps({"meta": {"api-version": "1.1"},
                               "projects": [{"name": n} for n in names]}).encode()
            content_type = JSON_TYPE
        else:
            body = ("<!DOCTYPE html><html><body>" + "".join(f'<a href="{n}/">{n}</a>\n' for n in names)
                    + "</body></html>").encode()
            content_type = "text/html"
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]

    def _page(self, name: str, as_json: bool, start_response: Callable[..., Any]) -> Iterable[bytes]:
        entries = self.files[name]
        if as_json:
            files = [{"filename": f, "url": f"../../files/{f}", "hashes": {"sha256": h}, "size": s,
                      "upload-time": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(m)),
                      **({"core-metadata": {"sha256": self.metadata[f]}} if f in self.metadata else {})}
                     for f, h, s, m in entries]
            body = json.dumps({"meta": {"api-version": "1.1"}, "name": name, "files": files}).encode()
            content_type = JSON_TYPE
        else:
            body = _html(self, entries).encode()
            content_type = "text/html"
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]


def _html(stand_in: StandIn, entries: list[tuple[str, str, int, float]]) -> str:
    def attribute(filename: str) -> str:
        digest = stand_in.metadata.get(filename)
        if not digest:
            return ""
        return f' data-core-metadata="sha256={digest}" data-dist-info-metadata="sha256={digest}"'
    return ("<!DOCTYPE html><html><body>" + "".join(
        f'<a href="../../files/{f}#sha256={h}"{attribute(f)}>{f}</a>\n' for f, h, _s, _m in entries)
            + "</body></html>")


def _metadata(wheel: Path) -> str | None:
    """The wheel's METADATA written beside it as `<wheel>.metadata`, and its sha256."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            member = next((n for n in archive.namelist()
                           if n.count("/") == 1 and n.endswith(".dist-info/METADATA")), None)
            if member is None:
                return None
            data = archive.read(member)
    except zipfile.BadZipFile:
        return None
    target = wheel.with_name(wheel.name + ".metadata")
    if not target.exists() or target.read_bytes() != data:
        target.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def static_tree(stand_in: StandIn, root: Path) -> None:
    """The same index as static files, for nginx: simple/<name>/index.html."""
    for name, entries in stand_in.files.items():
        page = root / "simple" / name
        page.mkdir(parents=True, exist_ok=True)
        (page / "index.html").write_text(_html(stand_in, entries))


if __name__ == "__main__":
    app = StandIn(Path(sys.argv[1]), pep658=sys.argv[4:5] == ["pep658"])
    if len(sys.argv) > 3:
        static_tree(app, Path(sys.argv[3]))
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    serve(app, host="127.0.0.1", port=int(sys.argv[2]), threads=16, clear_untrusted_proxy_headers=True,
          _quiet=True)
