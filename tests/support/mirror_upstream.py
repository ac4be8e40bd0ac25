"""A stand-in upstream for the mirror's tests: PEP 691 JSON pages with PEP 700 fields, files
served by a second route, and faults a test injects per file (5xx, hang, cut mid-body, wrong
bytes, overlong, slow, a trickle of 1 KiB every 0.2 s, no size on the page) or per page (5xx,
older serial). It counts every request it gets.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.support.server_fixtures import JSON_TYPE


@dataclass
class Upstream:
    # name -> filename -> (bytes, upload time in seconds)
    projects: dict[str, dict[str, tuple[bytes, float]]] = field(default_factory=dict)
    faults: dict[str, str] = field(default_factory=dict)  # filename or "page:<name>" -> fault
    page_hashes: dict[str, str] = field(default_factory=dict)  # filename -> sha256 the page claims
    metadata: dict[str, bytes] = field(default_factory=dict)  # filename -> its .metadata file
    yanked: dict[str, str] = field(default_factory=dict)  # filename -> reason
    sizes: bool = True  # False: pages without sizes, files without Content-Length (chunked)
    serial: int = 100
    delay: float = 0.0  # seconds between chunks of a file
    requests: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)

    def add(self, name: str, filename: str, data: bytes, uploaded: float | None = None) -> str:
        self.projects.setdefault(name, {})[filename] = (data, time.time() - 30 * 86400 if uploaded is None
                                                        else uploaded)
        return hashlib.sha256(data).hexdigest()

    def count(self, prefix: str) -> int:
        with self.lock:
            return sum(1 for r in self.requests if r.startswith(prefix))

    def app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path: str = environ["PATH_INFO"]
        with self.lock:
            self.requests.append(path)
            self.headers.append({k: str(v) for k, v in environ.items() if k.startswith("HTTP_")})
        parts = path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "simple":
            return self._page(parts[1], start_response)
        if len(parts) == 3 and parts[0] == "files":
            return self._file(parts[1], parts[2], start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "0")])
        return [b""]

    def _page(self, name: str, start_response: Callable[..., Any]) -> Iterable[bytes]:
        fault = self.faults.get(f"page:{name}")
        if fault == "500":
            return _empty("500 Internal Server Error", start_response)
        if name not in self.projects:
            start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "0")])
            return [b""]
        files = []
        for filename, (data, uploaded) in sorted(self.projects[name].items()):
            stamp = (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(uploaded))
                     + f".{int(uploaded % 1 * 1e6):06d}Z")
            sha = self.page_hashes.get(filename, hashlib.sha256(data).hexdigest())
            entry = {"filename": filename, "url": f"../../files/{name}/{filename}",
                     "hashes": {"sha256": sha}, "requires-python": ">=3.8",
                     "yanked": self.yanked.get(filename, False),
                     "size": len(data), "upload-time": stamp}
            if not self.sizes or self.faults.get(filename) == "unsized":  # the file keeps Content-Length
                del entry["size"]
            if filename in self.metadata:
                entry["core-metadata"] = {"sha256": hashlib.sha256(self.metadata[filename]).hexdigest()}
            files.append(entry)
        body = json.dumps({"meta": {"api-version": "1.1"}, "name": name, "files": files}).encode()
        serial = self.serial - 50 if fault == "older-serial" else self.serial
        start_response("200 OK", [("Content-Type", JSON_TYPE), ("Content-Length", str(len(body))),
                                  ("X-PyPI-Last-Serial", str(serial))])
        return [body]

    def _file(self, name: str, filename: str, start_response: Callable[..., Any]) -> Iterable[bytes]:
        if filename.endswith(".metadata") and filename.removesuffix(".metadata") in self.metadata:
            body = self.metadata[filename.removesuffix(".metadata")]
            if self.faults.get(filename) == "wrong":
                body = body.upper()
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            return [body]
        found = self.projects.get(name, {}).get(filename)
        fault = self.faults.get(filename)
        if found is None or fault == "deleted":
            start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "0")])
            return [b""]
        data = found[0]
        if fault == "silent":  # no answer at all until released
            self.release.wait(10)
        if fault == "500":
            return _empty("503 Service Unavailable", start_response)
        if fault == "wrong":
            data = bytes(b ^ 0x55 for b in data)
        length = len(data)
        if fault == "overlong" or not self.sizes:  # no Content-Length: chunked
            if fault == "overlong":
                data += b"extra bytes"
            elif fault == "cut":
                data = data[: length // 2]
            start_response("200 OK", [("Content-Type", "application/octet-stream")])
            return self._chunks(data, fault)
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(length))])
        return self._chunks(data[: length // 2] if fault == "cut" else data, fault)

    def _chunks(self, data: bytes, fault: str | None) -> Iterator[bytes]:
        step = 64 * 1024
        if fault == "trickle":  # never idle for a second, never done soon
            for start in range(0, len(data), 1024):
                if self.release.wait(0.2):
                    return
                yield data[start:start + 1024]
            return
        for start in range(0, len(data), step):
            if fault == "hang" and start >= len(data) // 2:
                self.release.wait(10)
                return
            if self.delay:
                time.sleep(self.delay)
            yield data[start:start + step]


def _empty(status: str, start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", "0")])
    return [b""]
