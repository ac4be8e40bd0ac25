"""What each watched repository last did: refs seen, versions built, errors and back-off.

One JSON file per repository under `<paths.state>/repos/`, replaced atomically, so a run
killed at any point leaves either the previous state or the next one. This is the only
record that cannot be rebuilt from the store (the distribution name found at the first
build, the failure count), so it lives in the state directory, not the cache.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from pypi_insiders.config import Config
from pypi_insiders.files import atomic_write
from pypi_insiders.state_layout import StateLayout

log = logging.getLogger(__name__)

BACKOFF_START = 300.0  # the first retry after a failure waits five minutes, then doubles


@dataclass(kw_only=True)
class BuildRecord:
    tag: str
    version: str
    result: str  # "ok" or "failed"
    time: float
    files: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass(kw_only=True)
class FailedBuild:
    """A version whose build failed at this commit; retried on its own back-off, or at once when
    its tag moves to another commit, so one broken tag never delays the repository's newer ones."""

    tag: str
    commit: str
    failures: int
    next_attempt: float
    error: str | None = None  # the build's one line, cause included: kept after newer tags build


@dataclass
class RepoState:
    key: str
    distribution: str | None = None
    refs: dict[str, str] = field(default_factory=dict)  # tag name -> commit sha (peeled)
    built: dict[str, str] = field(default_factory=dict)  # version -> tag it was built from
    last_check: float | None = None
    last_result: str | None = None  # "updated", "unchanged" or "failed"
    last_build: BuildRecord | None = None
    last_error: str | None = None
    failures: int = 0
    next_attempt: float | None = None
    failed_builds: dict[str, FailedBuild] = field(default_factory=dict)  # version -> its failure

    def record_failure(self, message: str, backoff_max: float, now: float | None = None, *,
                       backoff: bool = True) -> None:
        """Exponential back-off: a broken repository is retried less and less often, up to the cap.

        `backoff=False` for failed builds: those wait on their own (`record_build_failure`) while
        the repository goes on being fetched, so a newer tag is still built at the next run.
        """
        now = time.time() if now is None else now
        self.failures += 1
        self.last_error = message
        self.last_result = "failed"
        self.next_attempt = delay(self.failures, backoff_max, now) if backoff else None

    def record_success(self, result: str) -> None:
        """`waiting` means failed builds are still due for a retry: their error stays on show."""
        if result != "waiting":
            self.failures = 0
            self.last_error = None
        self.last_result = result
        self.next_attempt = None

    def record_build_failure(self, tag: str, commit: str, version: str, backoff_max: float, now: float, *,
                             error: str | None = None) -> None:
        earlier = self.failed_builds.get(version)
        failures = earlier.failures + 1 if earlier and earlier.commit == commit else 1
        self.failed_builds[version] = FailedBuild(tag=tag, commit=commit, failures=failures,
                                                  next_attempt=delay(failures, backoff_max, now), error=error)

    def build_waiting(self, tag: str, commit: str, version: str, now: float) -> FailedBuild | None:
        """The failure that holds this version back now, if any (a moved tag is never held)."""
        failed = self.failed_builds.get(version)
        if failed is None or failed.commit != commit or failed.next_attempt <= now:
            return None
        return failed


def delay(failures: int, backoff_max: float, now: float) -> float:
    return now + min(BACKOFF_START * 2.0 ** (failures - 1), backoff_max)


def path_of(config: Config, key: str) -> Path:
    return StateLayout(config.paths.state).repo_state(key)


def load(config: Config, key: str) -> RepoState:
    """The saved state, or a fresh one when there is none or it is unreadable (logged)."""
    path = path_of(config, key)
    try:
        data = json.loads(path.read_text())
        return _from_dict(key, data)
    except FileNotFoundError:
        return RepoState(key)
    except (OSError, ValueError, TypeError, KeyError) as error:
        log.warning("%s: unreadable state, starting afresh: %s", path, error,
                    extra={"REPO": key, "FILE": str(path)})
        return RepoState(key)


def _versions_only(key: str, table: dict[str, Any]) -> dict[str, Any]:
    """Entries keyed by a valid version; another key (a hand edit) is dropped with a warning."""
    kept = {}
    for version, value in table.items():
        try:
            Version(version)
        except InvalidVersion:
            log.warning("%s: state entry %r is not a version; ignored", key, version, extra={"REPO": key})
            continue
        kept[version] = value
    return kept


def _from_dict(key: str, data: dict[str, Any]) -> RepoState:
    build = data.get("last_build")
    failed = _versions_only(key, dict(data.get("failed_builds", {})))
    return RepoState(
        key=key,
        distribution=data.get("distribution"),
        refs=dict(data.get("refs", {})),
        built=_versions_only(key, dict(data.get("built", {}))),
        last_check=data.get("last_check"),
        last_result=data.get("last_result"),
        last_build=BuildRecord(**build) if isinstance(build, dict) else None,
        last_error=data.get("last_error"),
        failures=int(data.get("failures", 0)),
        next_attempt=data.get("next_attempt"),
        failed_builds={str(v): FailedBuild(**f) for v, f in failed.items()},
    )


def save(config: Config, state: RepoState, *, durable: bool = True) -> None:
    """`durable=False` skips the fsync: right when only the check time changed, which a crash may lose."""
    path = path_of(config, state.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(asdict(state), indent=2, sort_keys=True).encode() + b"\n",
                 durable=durable)
