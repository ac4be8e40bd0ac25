"""What each watched repository last did, for `pypi-insiders status` and the index's /status page.

Everything comes from the state files the runner writes, plus two outside facts: the fetch
timer's next run (asked of systemd only when systemd is running) and, for the distributions
named in `[access] public_projects` only, the newest public release upstream. A private-only
name is never asked about: upstream would learn that it exists here. Upstream answers are
cached on disk for a few minutes, shared by the command and the service.

The index never computes this while answering a request: the service's parent does, in the
background (`service/status_refresh.py`), and writes the typed values (`status_report`) to a
snapshot file its processes read. `input_stamp` tells it cheaply when something changed.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from pypi_insiders.config import Config, RepoConfig, current_repos
from pypi_insiders.errors import ConfigError, InvalidDistributionError
from pypi_insiders.fetch import hook_status, repo_state, versions
from pypi_insiders.files import atomic_write
from pypi_insiders.http_client import HttpClient, HttpError, display_url
from pypi_insiders.simple_api import V1_JSON_MEDIA_TYPE
from pypi_insiders.state_layout import CacheLayout, StateLayout
from pypi_insiders.status_report import (
    FailedBuild,
    LastBuild,
    MirrorStatus,
    RepoStatus,
    StatusReport,
    snapshot_path,
    write_snapshot,
)
from pypi_insiders.store import parse_filename
from pypi_insiders.units import FETCH_TIMER
from pypi_insiders.wording import counted, size, utc

log = logging.getLogger(__name__)

UPSTREAM_TTL = 300.0
_MAX_PAGE = 16 * 1024 * 1024


def _iso(timestamp: float | None) -> str | None:
    """`wording.utc`, or None for a moment that never happened (unset or 0)."""
    return utc(timestamp) if timestamp else None


def next_run() -> str | None:
    """The timer's next elapse as systemd prints it; None without systemd or without the timer."""
    if not Path("/run/systemd/system").is_dir():
        return None
    try:
        done = subprocess.run(["systemctl", "show", FETCH_TIMER, "-p", "NextElapseUSecRealtime", "--value"],
                              capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = done.stdout.strip()
    return value if done.returncode == 0 and value and value != "n/a" else None


def newest_public(config: Config, distribution: str, client: HttpClient) -> Version | None:
    """The newest final release upstream (PEP 691 JSON), None when unknown or unreachable."""
    if not config.upstream.url:
        return None
    try:
        response = client.get(f"{config.upstream.url}{distribution}/", headers={"Accept": V1_JSON_MEDIA_TYPE},
                              timeout=min(config.upstream.timeout, 5.0), max_bytes=_MAX_PAGE)
    except HttpError as error:
        log.debug("newest public release of %s unknown: %s", distribution, error)
        return None
    if response.status != 200:
        if response.status != 404:  # 401/403: the upstream credentials are wrong, say so
            log.warning("newest public release of %s unknown: %s answered %d", distribution,
                        response.url, response.status, extra={"PROJECT": distribution})
        return None
    try:
        data = json.loads(response.body)
    except ValueError:
        return None
    return _newest_final(data) if isinstance(data, dict) else None


def _newest_final(data: dict[str, Any]) -> Version | None:
    found: list[Version] = []
    for text in data.get("versions") or []:
        try:
            found.append(Version(str(text)))
        except InvalidVersion:
            continue
    for entry in data.get("files") or []:
        try:
            if isinstance(entry, dict) and not entry.get("yanked"):
                found.append(parse_filename(str(entry.get("filename"))).version)
        except InvalidDistributionError:
            continue
    finals = [v for v in found if not v.is_prerelease and not v.is_devrelease]
    return max(finals, default=None)


def upstream_versions(config: Config, distributions: set[str], *, ask: bool = True) -> dict[str, str | None]:
    """Newest public version per distribution, from the disk cache or asked again in parallel.

    Only `[access] public_projects` are looked up; the others are None. `ask=False`: what the
    cache holds, without a request.
    """
    path = CacheLayout(config.paths.cache).upstream_releases
    try:
        cache: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if not isinstance(cache, dict):
        cache = {}
    now = time.time()
    public = {d for d in distributions if canonicalize_name(d) in config.access.public_projects}
    stale = sorted(d for d in public
                   if not isinstance(cache.get(d), dict) or now - cache[d].get("checked", 0) > UPSTREAM_TTL)
    if stale and ask:
        with HttpClient(pool_size=8) as client, ThreadPoolExecutor(max_workers=8) as pool:
            lookups = pool.map(lambda d: newest_public(config, d, client), stale)
            for name, found in zip(stale, lookups, strict=True):
                cache[name] = {"checked": now, "version": str(found) if found else None}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps(cache).encode(), durable=False)
        except OSError as error:
            log.debug("cannot cache upstream versions in %s: %s", path, error)
    return {d: _cached_version(cache.get(d)) if d in public else None for d in distributions}


def _cached_version(entry: object) -> str | None:
    version = entry.get("version") if isinstance(entry, dict) else None
    return version if isinstance(version, str) else None


def _newest_tag(repo: RepoConfig, record: repo_state.RepoState) -> versions.TagVersion | None:
    candidates = versions.tag_versions(record.refs, repo)
    return candidates[-1] if candidates else None


def repo_status(repo: RepoConfig, record: repo_state.RepoState, upstream: str | None) -> RepoStatus:
    newest = _newest_tag(repo, record)
    built = max((Version(v) for v in record.built), default=None)
    warning = None
    if upstream and built and Version(upstream) > versions.public_part(built):
        warning = (f"upstream has {record.distribution or repo.distribution} {upstream}, newer than "
                   f"the newest Insiders build {built}")
    last = record.last_build
    return RepoStatus(
        key=repo.key, url=display_url(repo.url), distribution=repo.distribution or record.distribution,
        last_check=_iso(record.last_check), last_result=record.last_result,
        newest_tag=newest.tag if newest else None, newest_build=str(built) if built else None,
        last_build=None if last is None else LastBuild(
            tag=last.tag, version=last.version, result=last.result, time=_iso(last.time),
            files=tuple(last.files), error=last.error),
        last_error=record.last_error, failures=record.failures, next_attempt=_iso(record.next_attempt),
        failed_builds=tuple(FailedBuild(version=v, tag=f.tag, failures=f.failures,
                                        next_attempt=_iso(f.next_attempt), error=f.error)
                            for v, f in sorted(record.failed_builds.items())),
        upstream_version=upstream, warning=warning)


def collect(config: Config, *, ask_upstream: bool = True) -> StatusReport:
    """Read afresh at every call: the repository list from the config files, each state file.

    `ask_upstream=False`: upstream versions only as far as the disk cache knows them (fast).
    """
    try:
        repos, problem = current_repos(config), None
    except ConfigError as error:  # a broken drop-in: show what was valid at start, and why
        repos, problem = config.repos, "; ".join(error.problems)
    records = {repo.key: repo_state.load(config, repo.key) for repo in repos}
    names = {repo.distribution or records[repo.key].distribution for repo in repos}
    upstream = upstream_versions(config, {n for n in names if n}, ask=ask_upstream)
    repositories = []
    for repo in repos:
        record = records[repo.key]
        name = repo.distribution or record.distribution
        status = repo_status(repo, record, upstream.get(name) if name else None)
        repositories.append(replace(status, last_delivery=hook_status.last_delivery(config, repo)))
    return StatusReport(generated=utc(time.time()), next_run=next_run(), config_problem=problem,
                        repositories=tuple(repositories), webhooks=hook_status.collect(config))


def refresh(config: Config, *, ask_upstream: bool = True) -> StatusReport:
    """Compute the report and write the snapshot every serving process reads (the parent's job)."""
    report = collect(config, ask_upstream=ask_upstream)
    write_snapshot(snapshot_path(config.paths.cache), report)
    return report


Stamp = tuple[tuple[str, int, int, int], ...]


def input_stamp(config: Config) -> Stamp:
    """What the report is read from, as (path, mtime, inode, size): unchanged stamp, unchanged report.

    A few stats: the config file, the drop-in directory and each drop-in (edited in place by
    hand), and the state directory (every state file is replaced atomically, which changes it).
    """
    paths = [config.path] if config.path is not None else []
    paths.append(config.fetch.repos_dir)
    if config.fetch.repos_dir.is_dir():
        paths.extend(sorted(config.fetch.repos_dir.glob("*.toml")))
    paths.append(StateLayout(config.paths.state).repos)
    paths.extend(hook_status.inputs(config))
    stamp = []
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            stamp.append((str(path), 0, 0, 0))
        else:
            stamp.append((str(path), stat.st_mtime_ns, stat.st_ino, stat.st_size))
    return tuple(stamp)


def cli_status(config: Config, *, as_json: bool = False, mirror: MirrorStatus | None = None) -> int:
    """`mirror`: the mirror's section, made by the caller (this stage may not import the mirror)."""
    report = replace(collect(config), mirror=mirror)
    if as_json:
        print(json.dumps(report.as_json(), indent=2))
        return 0
    if report.config_problem:
        print(f"! configuration: {report.config_problem}")
    if not report.repositories:
        print("no repositories watched")
    for repo in report.repositories:
        _print_repo(repo)
        if repo.last_delivery is not None:
            print(f"  last webhook: {hook_status.describe_delivery(repo.last_delivery)}")
    print(f"next run: {report.next_run or 'unknown (systemd timer not available)'}")
    for line in hook_status.lines(report.webhooks):
        print(line)
    for line in mirror_lines(report.mirror):
        print(line)
    return 0


def mirror_lines(mirror: MirrorStatus | None) -> list[str]:
    """The command's lines about the caching mirror (none unless `fallback = "mirror"`)."""
    if mirror is None:
        return []
    cap = f"of {size(mirror.max_size)}" if mirror.max_size else "(no max_size)"
    free = size(mirror.free_disk) if mirror.free_disk is not None else "unknown"
    shown = [f"mirror: {size(mirror.bytes_used)} {cap} in {counted(mirror.files, 'file')}; free disk {free} "
             f"(min_free {size(mirror.min_free)}){'; offline' if mirror.offline else ''}",
             f"  {counted(mirror.hits, 'hit')}, {counted(mirror.misses, 'miss', 'misses')}, "
             f"{size(mirror.bytes_from_upstream)} from upstream, "
             f"{counted(mirror.stale_pages_served, 'stale page')} served"]
    if mirror.last_upstream_error:
        shown.append(f"  ! last upstream error ({mirror.last_upstream_error_at or 'time unknown'}): "
                     f"{mirror.last_upstream_error}")
    return shown


def _print_repo(repo: RepoStatus) -> None:
    build = repo.last_build
    built = f"{build.version} ({build.result} {build.time})" if build else "none"
    print(f"{repo.key}: checked {repo.last_check or 'never'}, {repo.last_result or 'not run'}; "
          f"newest tag {repo.newest_tag or '-'}; last build {built}")
    for problem in (repo.last_error, repo.warning):
        if problem:
            print(f"  ! {problem}")
    if repo.next_attempt:
        print(f"  next try {repo.next_attempt} (after {repo.failures} failure(s))")
    for failed in repo.failed_builds:
        print(f"  ! {failed.tag} failed to build {failed.failures} time(s); next try {failed.next_attempt}"
              + (f": {failed.error}" if failed.error else ""))
