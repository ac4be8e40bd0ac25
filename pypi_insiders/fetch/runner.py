"""`pypi-insiders update` and `fetch`: every watched repository in turn, one failure stops none.

A lock keeps the timer's run and a manual one from overlapping. For each repository: fetch
its tags, pick the versions to build, build and publish them, and record the outcome in its
state file after every step, so a run killed at any point loses at most the build in
progress and leaves nothing half-written in the store (builds happen in the cache directory;
the store only ever receives verified files through `Store.add`).
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from pypi_insiders import fetch_queue, sd
from pypi_insiders.config import Config, RepoConfig
from pypi_insiders.directories import prepare
from pypi_insiders.errors import (
    BuildError,
    CredentialError,
    FetchError,
    LockedError,
    StoreError,
    UsageError,
)
from pypi_insiders.fetch import builder, git, ownership, publish, repo_state, sandbox, versions
from pypi_insiders.files import LockBusy, exclusive_lock
from pypi_insiders.http_client import display_url
from pypi_insiders.provenance import Origin
from pypi_insiders.state_layout import CacheLayout, StateLayout
from pypi_insiders.store import Store
from pypi_insiders.units import FETCH_PATH
from pypi_insiders.wording import counted, utc

log = logging.getLogger(__name__)

# OSError: a full disk or a permission problem in the cache fails this repository, not the run.
RepoFailure = (BuildError, CredentialError, FetchError, StoreError, OSError)


class DueBuildsError(BuildError):
    """Builds due in this run failed; each was logged as it failed, so this names the tags only."""

    def __init__(self, message: str, tags: list[str], cause: str = "") -> None:
        super().__init__(message)
        self.tags = tags
        self.cause = cause  # the first failure's cause, for the run's summary line


def cli_update(config: Config, repo_keys: list[str], *, force: bool = False, wait: bool = False) -> int:
    """Update these repositories (all by default), the queued ones first; their queue entries are
    claimed first of all, so a push during the run queues (and, on systemd, starts) one more run."""
    repos = select(config, repo_keys)
    prepare(config, create=True)
    check_sandbox(config)
    with run_lock(StateLayout(config.paths.state).update_lock, wait=wait):
        claimed = fetch_queue.claim(fetch_queue.queue_dir(config.paths.state),
                                    set(repo_keys) if repo_keys else None)
        first = [r for key in claimed if (r := config.repo(key)) is not None and r in repos]
        repos = first + [r for r in repos if r not in first]
        outcomes, failures = _update_all(config, repos, force=force)
    log_summary(len(repos), outcomes, failures)
    return 1 if outcomes["failed"] else 0


def cli_fetch(config: Config, *, trigger: str | None) -> int:
    """What the units run. Started by the path unit: only the queued repositories, then the queue
    again after each pass, for `SETTLE` seconds, so a burst of pushes is one run and not one run
    each (for `MAX_RUN` seconds at most; what is left then starts the next run). Started by the
    timer or by hand: every repository. Either way the lock is waited for: a path-triggered run
    failing on a busy lock would be restarted at once by the path unit (the queue is still full)
    until the start limit took the path unit down.
    """
    if trigger != FETCH_PATH:
        return cli_update(config, [], wait=True)
    return run_queued(config, f"started by {trigger}")


def run_queued(config: Config, why: str) -> int:
    """Only the queued repositories, pass after pass (see `cli_fetch`); also local mode's run
    when a webhook woke the watcher (`service/queue_watch.py`)."""
    prepare(config, create=True)
    check_sandbox(config)
    queue = fetch_queue.queue_dir(config.paths.state)
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    total = 0
    with run_lock(StateLayout(config.paths.state).update_lock, wait=True):
        ends = time.monotonic() + MAX_RUN
        first = True
        while first or time.monotonic() < ends:
            repos = _known(config, fetch_queue.claim(queue) if first else _claim_within(queue, SETTLE))
            if not repos:
                break
            log.info("%s: %d queued %s", why if first else "queued during the run",
                     len(repos), "repository" if len(repos) == 1 else "repositories", extra={"STEP": "queue"})
            done, failed = _update_all(config, repos, force=False)
            outcomes.update(done)
            failures += failed
            total += len(repos)
            first = False
    if total:
        log_summary(total, outcomes, failures)
    else:  # a run the path unit started for an entry another run took: nothing to report
        log.info("%s: nothing queued (any more)", why, extra={"STEP": "queue"})
    return 1 if outcomes["failed"] else 0


MAX_RUN = 600.0  # seconds of passes after the first; then the path unit starts a new run if needed
SETTLE = 1.0  # seconds a path-triggered run waits for more entries before it ends
_GATHER = 0.25  # once an entry is there, the others of a burst this long after it come along
_POLL = 0.05


def _claim_within(queue: Path, settle: float) -> list[str]:
    """The queued keys, waiting up to `settle` seconds for one to arrive; a burst's entries that
    follow within `_GATHER` are taken together (one fetch for the lot, not one each)."""
    deadline = time.monotonic() + settle
    while not fetch_queue.pending(queue):
        if time.monotonic() >= deadline:
            return []
        time.sleep(_POLL)
    time.sleep(_GATHER)
    return fetch_queue.claim(queue)


def _known(config: Config, keys: list[str]) -> list[RepoConfig]:
    """The claimed keys' repositories; a key no longer configured is dropped with a warning."""
    found: list[RepoConfig] = []
    for key in keys:
        repo = config.repo(key)
        if repo is None:
            log.warning("queued repository %r is not configured (any more): dropped", key[:200],
                        extra={"REPO": key[:200], "STEP": "queue"})
        else:
            found.append(repo)
    return found


def _update_all(config: Config, repos: list[RepoConfig], *, force: bool) -> tuple[Counter[str], list[str]]:
    clear_stale_builds(CacheLayout(config.paths.cache).builds)
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    for number, repo in enumerate(repos, 1):
        sd.status(f"updating {repo.key} ({number}/{len(repos)})")
        outcome = update_repo(config, repo, force=force, failures=failures)
        outcomes[outcome] += 1
        if sys.stderr.isatty():
            print(f"[{number}/{len(repos)}] {repo.key}: {outcome}", file=sys.stderr)
    return outcomes, failures


def check_sandbox(config: Config) -> None:
    """Before anything is fetched: a host that cannot make the build sandbox refuses the run
    (and one running builds unsandboxed says so)."""
    build_sandbox = sandbox.for_config(config)
    if build_sandbox is not None:
        build_sandbox.check()


def select(config: Config, repo_keys: list[str]) -> list[RepoConfig]:
    """The repositories to update, in config order; an unknown key is a usage error naming it."""
    if not repo_keys:
        return list(config.repos)
    unknown = [key for key in repo_keys if config.repo(key) is None]
    if unknown:
        msg = f"unknown repository {unknown[0]!r} (see `pypi-insiders repos list`)"
        raise UsageError(msg)
    return [r for r in config.repos if r.key in repo_keys]


@contextmanager
def run_lock(path: Path, *, wait: bool = False) -> Iterator[None]:
    """An flock the kernel drops when the process dies, so a killed run never blocks the next.

    `wait`: block until the holder is done (the units' runs) instead of failing at once.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with ExitStack() as held:
        try:
            held.enter_context(exclusive_lock(path, wait=False))
        except LockBusy:
            if not wait:
                msg = f"another update is running (it holds {path}); try again later"
                raise LockedError(msg) from None
            log.info("another run holds %s: waiting for it", path, extra={"STEP": "lock"})
            held.enter_context(exclusive_lock(path, wait=True))
        yield


def clear_stale_builds(directory: Path) -> None:
    """Build directories left by a killed run; safe to remove because we hold the lock."""
    if directory.is_dir():
        for leftover in directory.iterdir():
            shutil.rmtree(leftover, ignore_errors=True)


def log_summary(total: int, outcomes: Counter[str], failures: list[str] | None = None) -> None:
    """One line for the run; a failed run names what failed (the errors were logged as they came)."""
    waiting = f", {outcomes['waiting']} waiting after failures" if outcomes["waiting"] else ""
    which = f" ({'; '.join(failures)})" if failures else ""
    log_at = log.error if outcomes["failed"] else log.info
    log_at("%d %s: %d updated, %d unchanged, %d failed%s%s", total,
           "repository" if total == 1 else "repositories", outcomes["updated"], outcomes["unchanged"],
           outcomes["failed"], which, waiting,
           extra={"STEP": "summary", "UPDATED": str(outcomes["updated"]), "FAILED": str(outcomes["failed"])})


def update_repo(config: Config, repo: RepoConfig, *, force: bool, failures: list[str] | None = None) -> str:
    """Fetch, build and publish one repository; returns updated, unchanged, failed or waiting.

    Failed means the repository could not be fetched or a build that was due failed; a tag
    still waiting out its back-off is `waiting`. What failed is appended to `failures`.
    """
    failures = failures if failures is not None else []
    record = repo_state.load(config, repo.key)
    now = time.time()
    if not force and record.next_attempt is not None and record.next_attempt > now:
        log.info("%s: waiting after %s until %s (use --force to retry now)", repo.key,
                 counted(record.failures, "failure"), utc(record.next_attempt),
                 extra=_fields(repo, record, STEP="backoff"))
        return "waiting"
    record.last_check = now
    outcome_changed = True
    try:
        outcome = git.update(config, repo)
        outcome_changed = outcome.changed > 0 or outcome.tags != record.refs
        record.refs = outcome.tags
        built, waiting = build_new(config, repo, record, outcome.tags, force=force)
        record.record_success("updated" if built else "waiting" if waiting else "unchanged")
    except BuildError as error:  # the fetch worked: newer tags must not wait for a broken one
        # build_new logged each failed build as it came: the error is not repeated here.
        record.record_failure(str(error), config.fetch.backoff_max, now, backoff=False)
        tags = error.tags if isinstance(error, DueBuildsError) else ["a tag"]
        cause = f": {error.cause}" if isinstance(error, DueBuildsError) and error.cause else ""
        failures.append(f"{repo.key}: build of {', '.join(tags)} failed{cause}")
    except RepoFailure as error:
        log.error("%s", error, extra=_fields(repo, record, STEP="update"))
        record.record_failure(str(error), config.fetch.backoff_max, now)
        failures.append(f"{repo.key}: cannot be fetched" if isinstance(error, FetchError | CredentialError)
                        else f"{repo.key}: {type(error).__name__}")
    unchanged = record.last_result == "unchanged" and not outcome_changed
    repo_state.save(config, record, durable=not unchanged)
    return record.last_result or "failed"


def build_new(config: Config, repo: RepoConfig, record: repo_state.RepoState, tags: dict[str, str], *,
              force: bool = False) -> tuple[int, int]:
    """Build every version the policy asks for; a failing tag does not stop the next one.

    Returns (built, waiting): a version whose build failed at this very commit waits out its own
    back-off (`--force` retries it now). Raises BuildError after the loop when any build failed.
    """
    distribution = repo.distribution or _normalized(record.distribution)
    done = {Version(v) for v in record.built} | published_versions(config, distribution)
    todo = versions.to_build(versions.tag_versions(tags, repo), done, repo.build)
    record.failed_builds = {v: f for v, f in record.failed_builds.items() if Version(v) not in done}
    errors: list[BuildError | StoreError | OSError] = []
    failed_tags: list[str] = []
    built = waiting = 0
    for tag in todo:
        now = time.time()
        held = None if force else record.build_waiting(tag.tag, tag.commit, str(tag.version), now)
        if held is not None:
            log.info("%s: %s failed to build %s; next try after %s (use --force to retry now)",
                     repo.key, tag.tag, counted(held.failures, "time"), utc(held.next_attempt),
                     extra=_fields(repo, record, TAG=tag.tag, STEP="backoff"))
            waiting += 1
            continue
        try:
            build_one(config, repo, record, tag)
            record.failed_builds.pop(str(tag.version), None)
            built += 1
        except (BuildError, StoreError, OSError) as error:
            log.error("%s", error, extra=_fields(repo, record, TAG=tag.tag, STEP="build",
                                                 CAUSE=getattr(error, "cause", None) or str(error)))
            record.last_build = repo_state.BuildRecord(tag=tag.tag, version=str(tag.version), result="failed",
                                                       time=time.time(), error=str(error))
            record.record_build_failure(tag.tag, tag.commit, str(tag.version), config.fetch.backoff_max,
                                        time.time(), error=str(error))
            errors.append(error)
            failed_tags.append(tag.tag)
        repo_state.save(config, record)
    if errors:
        more = f" (and {len(errors) - 1} more failed builds)" if len(errors) > 1 else ""
        msg = f"{errors[0]}{more}"
        where = f"repository {repo.key} tag {failed_tags[0]}: "
        cause = getattr(errors[0], "cause", "") or str(errors[0]).removeprefix(where)
        raise DueBuildsError(msg, failed_tags, cause)
    return built, waiting


def build_one(config: Config, repo: RepoConfig, record: repo_state.RepoState,
              tag: versions.TagVersion) -> None:
    cache = CacheLayout(config.paths.cache)
    workdir = builder.new_workdir(cache.builds)
    own = repo.distribution or _normalized(record.distribution)  # one name per repository, once known
    try:
        request = builder.BuildRequest(repo_key=repo.key, mirror=git.mirror_path(config, repo.key), tag=tag,
                                       subdirectory=repo.subdirectory, distribution=own,
                                       timeout=config.fetch.build_timeout, workdir=workdir,
                                       pip_cache=cache.pip, build_envs=cache.build_envs, project=own,
                                       sandbox=sandbox.for_config(config, warn=False),
                                       settings=config.fetch.build_env)
        files = builder.build(request)
        ownership.check(config, repo.key, tag.tag, files[0].name, own=own, built=record.built)
        origin = Origin(repo=repo.key, url=display_url(repo.url), tag=tag.tag, commit=tag.commit)
        names = publish.publish(config, files, repo.key, origin)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    record.distribution = record.distribution or files[0].name
    record.built[str(tag.version)] = tag.tag
    record.last_build = repo_state.BuildRecord(tag=tag.tag, version=str(tag.version), result="ok",
                                               time=time.time(), files=names)


def _fields(repo: RepoConfig, record: repo_state.RepoState, **more: str) -> dict[str, str]:
    """journald fields of a repository's entries: PROJECT too once its distribution is known."""
    project = repo.distribution or _normalized(record.distribution)
    return {"REPO": repo.key, **({"PROJECT": project} if project else {}), **more}


def _normalized(name: str | None) -> NormalizedName | None:
    return canonicalize_name(name) if name else None


def published_versions(config: Config, distribution: NormalizedName | None) -> set[Version]:
    """Versions with a wheel already in the store, whoever put it there: never built twice."""
    if distribution is None or config.fetch.publish != "store":
        return set()
    return Store(config.paths.store).versions(distribution, "wheel")
