"""What `/status` and `pypi-insiders status` show, as typed values, and the snapshot file between them.

The fetch stage computes a `StatusReport` (`fetch/status.py`); the service's parent writes it
to a snapshot file in the cache directory in the background (`service/status_refresh.py`), and
every serving process only reads that file: a request to `/status` never asks upstream or
systemd anything. The values live here, at the top, because both the fetch stage (which
fills them) and the web (which filters and shows them, and may not import the fetch stage)
need them.

Adding a field: give the dataclass a field with a default, fill it in `fetch/status.py`, show
it where wanted. The snapshot's JSON follows the dataclasses (`as_json` and `from_json` walk
their fields), so neither needs a change, and a snapshot written before the field existed
still reads (the default applies). The mirror's section (`MirrorStatus`) is the exception: the
fetch stage may not import the mirror, so the parent's thread fills it (`service/status_refresh.py`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union, cast

from pypi_insiders.files import atomic_write
from pypi_insiders.state_layout import CacheLayout

log = logging.getLogger(__name__)

_MAX_SNAPSHOT = 64 * 1024 * 1024  # a sanity bound: thousands of repositories take a few MB


@dataclass(frozen=True, kw_only=True)
class LastBuild:
    """The newest build attempt of one repository."""

    tag: str
    version: str
    result: str
    time: str | None
    files: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class FailedBuild:
    """A version whose build failed, waiting for its next try."""

    version: str
    tag: str
    failures: int
    next_attempt: str | None
    error: str | None = None  # the build's one line, cause included: kept after newer tags build


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """A repository's last webhook delivery, as the index recorded it (`deliveries`)."""

    time: str
    forge: str
    event: str
    delivery: str
    outcome: str


@dataclass(frozen=True, kw_only=True)
class QueuedFetch:
    """A repository waiting in the fetch queue, since when (ISO 8601 UTC)."""

    key: str
    queued: str


@dataclass(frozen=True, kw_only=True)
class Webhooks:
    """Push-triggered builds: on or off, the queue, and pypi-insiders-fetch.path's state (None
    without systemd or the unit; a path unit stopped by its trigger limit must be visible)."""

    enabled: bool
    queue: tuple[QueuedFetch, ...] = ()
    path_unit: str | None = None


@dataclass(frozen=True, kw_only=True)
class MirrorStatus:
    """The caching mirror (`fallback = "mirror"`): its disk, as last scanned, and its counters.

    The scan (`scanned_at`) walks every kept file, so the parent makes it seldom
    (`service/status_refresh.py`); the counters, from `mirror/stats`, at every look (every second).
    `max_size` is None without a cap. The field names are `/status.json`'s: scripts read them.
    """

    bytes_used: int
    files: int
    max_size: int | None
    min_free: int
    free_disk: int | None
    offline: bool
    hits: int = 0
    misses: int = 0
    bytes_from_upstream: int = 0
    stale_pages_served: int = 0
    last_upstream_error: str | None = None  # worded with `display_url`: never a credential
    last_upstream_error_at: str | None = None
    scanned_at: str | None = None


@dataclass(frozen=True, kw_only=True)
class RepoStatus:
    """One watched repository; times are ISO 8601 UTC strings, None when never."""

    key: str
    url: str
    distribution: str | None = None
    last_check: str | None = None
    last_result: str | None = None
    newest_tag: str | None = None
    newest_build: str | None = None
    last_build: LastBuild | None = None
    last_error: str | None = None
    failures: int = 0
    next_attempt: str | None = None
    failed_builds: tuple[FailedBuild, ...] = ()
    upstream_version: str | None = None  # asked only for `[access] public_projects`
    warning: str | None = None
    last_delivery: Delivery | None = None


@dataclass(frozen=True, kw_only=True)
class StatusReport:
    """Every watched repository, the fetch timer's next run, a broken drop-in if any."""

    generated: str | None
    next_run: str | None = None
    config_problem: str | None = None  # names private repositories and paths: for read `*` only
    repositories: tuple[RepoStatus, ...] = ()
    webhooks: Webhooks | None = None
    mirror: MirrorStatus | None = None  # with `upstream.fallback = "mirror"` only

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: object) -> StatusReport:
        """The report a snapshot holds; ValueError when it is not one."""
        return cast("StatusReport", _decode(cls, data))


def _decode(cls: type[Any], data: object) -> object:
    if not isinstance(data, dict):
        msg = f"{cls.__name__}: expected an object, got {type(data).__name__}"
        raise ValueError(msg)
    hints = typing.get_type_hints(cls)
    known = {field.name for field in dataclasses.fields(cls)}
    values = {name: _value(hints[name], value) for name, value in data.items() if name in known}
    try:
        return cls(**values)
    except TypeError as error:  # a field without a default is missing
        raise ValueError(str(error)) from None


def _value(hint: Any, value: object) -> object:  # noqa: ANN401 - a type hint, walked at run time
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        (inner,) = (arg for arg in typing.get_args(hint) if arg is not type(None))
        return _value(inner, value)
    if origin is tuple:
        if not isinstance(value, list):
            msg = f"expected a list, got {type(value).__name__}"
            raise ValueError(msg)
        return tuple(_value(typing.get_args(hint)[0], item) for item in value)
    if dataclasses.is_dataclass(hint):
        return _decode(cast("type[Any]", hint), value)
    if not isinstance(value, hint):
        msg = f"expected {hint.__name__}, got {type(value).__name__}"
        raise ValueError(msg)
    return value


def snapshot_path(cache_dir: Path) -> Path:
    return CacheLayout(cache_dir).status_snapshot


def write_snapshot(path: Path, report: StatusReport) -> None:
    """Atomically: a reader sees the old snapshot or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(report.as_json()).encode(), durable=False)


class Snapshot:
    """The snapshot as one serving process reads it: parsed again only when the file changed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[tuple[int, int, int], StatusReport] | None = None

    @classmethod
    def in_cache(cls, cache_dir: Path) -> Snapshot:
        return cls(snapshot_path(cache_dir))

    def read(self) -> StatusReport | None:
        """None while there is none yet (or it is unreadable: the parent writes it again soon)."""
        try:
            stat = self.path.stat()
        except OSError:
            return None
        stamp = (stat.st_mtime_ns, stat.st_ino, stat.st_size)
        seen = self._seen
        if seen is not None and seen[0] == stamp:
            return seen[1]
        try:
            with self.path.open("rb") as file:
                report = StatusReport.from_json(json.loads(file.read(_MAX_SNAPSHOT)))
        except (OSError, ValueError) as error:
            log.warning("%s: unreadable status snapshot: %s", self.path, error)
            return None
        self._seen = (stamp, report)
        return report
