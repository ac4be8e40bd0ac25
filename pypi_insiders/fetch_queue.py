"""The fetch queue: "repository K is due", written by the index on a push, claimed by the fetcher.

One file per repository, `<state>/fetch-queue/<slug>.queued`, holding the key. The index
creates it whole under its final name or not at all (`files.create_exclusive`), so a burst of
pushes for one repository is one file, and the fetch path unit (`PathExistsGlob=` on
`*.queued`) never sees a half-written one. The fetcher claims (reads and unlinks) the entries
before it fetches anything: a push that lands during its run makes a new file, hence exactly one
more run. A lost or stale entry costs at most one fetch; the hourly timer covers the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path

from pypi_insiders.files import create_exclusive
from pypi_insiders.state_layout import StateLayout

SUFFIX = ".queued"
_MAX_KEY = 4096


def queue_dir(state: Path) -> Path:
    return StateLayout(state).fetch_queue


def entry_name(key: str) -> str:
    """A file name for a key: readable, and the hash keeps `a/b` and `a-b` apart."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", key).strip(".-")[:80] or "repo"
    return f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:8]}{SUFFIX}"


def enqueue(directory: Path, key: str) -> bool:
    """Mark `key` due: True when this made the entry, False when one was pending (coalesced)."""
    path = directory / entry_name(key)
    try:
        return create_exclusive(path, key.encode(), 0o640, durable=False)
    except FileNotFoundError:  # the first push ever, or a deleted state directory's queue
        directory.mkdir(mode=0o750, parents=True, exist_ok=True)
        return create_exclusive(path, key.encode(), 0o640, durable=False)


def _entries(directory: Path) -> list[tuple[float, Path]]:
    found: list[tuple[float, Path]] = []
    try:
        with os.scandir(directory) as scan:
            for item in scan:
                if item.name.endswith(SUFFIX) and not item.name.startswith("."):
                    with contextlib.suppress(FileNotFoundError):
                        found.append((item.stat().st_mtime, Path(item.path)))
    except FileNotFoundError:
        return []
    return sorted(found)


def pending(directory: Path) -> list[tuple[str, float]]:
    """(key, queued at) of every entry, oldest first, without claiming them: for `status`."""
    found: list[tuple[str, float]] = []
    for mtime, path in _entries(directory):
        key = _read_key(path)
        if key is not None:
            found.append((key, mtime))
    return found


def claim(directory: Path, keys: set[str] | None = None) -> list[str]:
    """Take the entries (only those of `keys`, when given): their keys, oldest first, each once.

    An entry is the caller's once its unlink succeeded; one another claimer took first is skipped.
    An unreadable entry is removed too: left behind, it would restart the path unit's run in a loop.
    """
    claimed: list[str] = []
    for _mtime, path in _entries(directory):
        key = _read_key(path)
        if key is not None and keys is not None and key not in keys:
            continue
        if key is None:
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        if key not in claimed:
            claimed.append(key)
    return claimed


def _read_key(path: Path) -> str | None:
    try:
        data = path.read_bytes()[:_MAX_KEY]
    except OSError:
        return None
    try:
        return data.decode().strip() or None
    except UnicodeDecodeError:
        return None
