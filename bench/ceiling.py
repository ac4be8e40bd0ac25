"""The waitress ceiling: the cheapest WSGI app that can serve our generated index.

Every page our index generated is read into a dict at start, and compressed once (gzip, as
ours does it: level 6, pages of 1 KB or more) for clients that send `Accept-Encoding: gzip`;
a request is one dict lookup and one `start_response`. Whatever a real index adds
(negotiation, ETags, file checks) can only cost more, so this app's figures are the most
any index served by one waitress process with the same thread count can reach on this
machine. Distribution files and metadata are
read from disk so that pip and uv can install through it too.

Usage: `python -m bench.ceiling INDEX_DIR STORE_DIR PORT THREADS`
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import waitress

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
HTML = "text/html; charset=utf-8"
GZIP_FROM = 1024  # as ours (web/page_cache.py)


def compress_pages(pages: dict[str, bytes]) -> dict[str, bytes]:
    return {path: gzip.compress(body, compresslevel=6, mtime=0) for path, body in pages.items()
            if len(body) >= GZIP_FROM}


def load_pages(index: Path) -> dict[str, bytes]:
    """URL path -> page, for `/simple/` and every `/simple/<project>/`."""
    simple = index / "simple"
    pages = {"/simple/": (simple / "index.html").read_bytes()}
    for page in simple.glob("*/index.html"):
        pages[f"/simple/{page.parent.name}/"] = page.read_bytes()
    return pages


def make_app(pages: dict[str, bytes], index: Path, store: Path) -> Callable[[dict[str, Any], StartResponse],
                                                                          Iterable[bytes]]:
    gzipped = compress_pages(pages)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "") and path in gzipped:
            packed = gzipped[path]
            start_response("200 OK", [("Content-Type", HTML), ("Content-Length", str(len(packed))),
                                      ("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")])
            return [packed]
        body = pages.get(path)
        kind = HTML
        if body is None and path.startswith("/packages/") and ".." not in path:
            relpath = path[len("/packages/"):]
            file = index / "packages" / relpath if relpath.endswith(".metadata") else store / relpath
            body = file.read_bytes() if file.is_file() else None
            kind = "application/octet-stream"
        if body is None:
            start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "9")])
            return [b"not found"]
        start_response("200 OK", [("Content-Type", kind), ("Content-Length", str(len(body)))])
        return [body]

    return app


def main(argv: list[str]) -> int:
    index, store, port, threads = Path(argv[0]), Path(argv[1]), int(argv[2]), int(argv[3])
    pages = load_pages(index)
    waitress.serve(make_app(pages, index, store), host="127.0.0.1", port=port, threads=threads,
                   ident="ceiling", _quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
