"""What the index remembers of webhook deliveries: ids already seen, and each repository's last one.

Both are small files in `<state>/hook-deliveries/`, shared by every worker process of the
index (a replay may reach another process than the original) and read by `status`:
- `seen/<sha256 of the id>`: an empty file made with O_EXCL, so exactly one process wins a
  delivery id; pruned after `KEEP` seconds (GitHub's and GitLab's redeliveries reuse the id;
  past three days a replay costs one extra fetch, nothing more);
- `last/<entry name>.json`: the repository's last delivery (time, forge, event, id, outcome).
Correctness never depends on them, only load and what `status` shows.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pypi_insiders.fetch_queue import entry_name
from pypi_insiders.files import atomic_write
from pypi_insiders.state_layout import StateLayout
from pypi_insiders.wording import utc

KEEP = 72 * 3600.0
_PRUNE_EVERY = 3600.0


def deliveries_dir(state: Path) -> Path:
    return StateLayout(state).hook_deliveries


@dataclass(frozen=True)
class LastDelivery:
    time: float
    forge: str
    event: str
    delivery: str
    outcome: str

    def as_status(self) -> dict[str, Any]:
        return {**asdict(self), "time": utc(self.time)}


def first_time(directory: Path, delivery: str, now: float | None = None) -> bool:
    """True when no process has seen this id (within `KEEP`): this caller owns the delivery."""
    seen = directory / "seen"
    path = seen / hashlib.sha256(delivery.encode("utf-8", "surrogateescape")).hexdigest()
    now = time.time() if now is None else now
    for _attempt in range(2):
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640))
        except FileNotFoundError:
            seen.mkdir(mode=0o750, parents=True, exist_ok=True)
            continue
        except FileExistsError:
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime > KEEP:  # an old id again: a new delivery
                    os.utime(path, (now, now))
                    return True
            return False
        _prune(seen, now)
        return True
    return True


def forget(directory: Path, delivery: str) -> None:
    """Undo `first_time` when the delivery could not be queued: its redelivery must be taken."""
    path = directory / "seen" / hashlib.sha256(delivery.encode("utf-8", "surrogateescape")).hexdigest()
    with contextlib.suppress(OSError):
        path.unlink()


def _prune(seen: Path, now: float) -> None:
    """At most once an hour (a marker's age says when), drop ids older than `KEEP`."""
    marker = seen / ".pruned"
    try:
        if now - marker.stat().st_mtime < _PRUNE_EVERY:
            return
    except FileNotFoundError:
        pass
    with contextlib.suppress(OSError):
        marker.touch()
        with os.scandir(seen) as scan:
            for item in scan:
                if not item.name.startswith(".") and now - item.stat().st_mtime > KEEP:
                    with contextlib.suppress(OSError):
                        os.unlink(item.path)  # noqa: PTH108 - a str from scandir


def record(directory: Path, key: str, last: LastDelivery) -> None:
    """The repository's last delivery, replaced whole (not durable: it is for display only)."""
    path = directory / "last" / f"{entry_name(key)}.json"
    data = json.dumps({"key": key, **asdict(last)}).encode()
    try:
        atomic_write(path, data, 0o640, durable=False)
    except FileNotFoundError:
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        atomic_write(path, data, 0o640, durable=False)


def last(directory: Path, key: str) -> LastDelivery | None:
    try:
        data = json.loads((directory / "last" / f"{entry_name(key)}.json").read_bytes())
        return LastDelivery(float(data["time"]), str(data["forge"]), str(data["event"]),
                            str(data["delivery"]), str(data["outcome"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
