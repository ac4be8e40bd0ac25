"""What each watched repository last did, for `pypi-insiders status` and the index's /status page.

Everything comes from the state files the runner writes, plus two cheap outside facts: the
fetch timer's next run (asked of systemd only when systemd is running) and, per distribution,
the newest public release upstream. Upstream answers are cached on disk for a few minutes so
that a busy /status page costs no upstream requests and the command and the app share them.
"""

from __future__ import annotations

import html
import json
import logging
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from pypi_insiders.config import Config, RepoConfig, current_repos
from pypi_insiders.errors import ConfigError, InvalidDistributionError
from pypi_insiders.fetch import repo_state, versions
from pypi_insiders.files import atomic_write
from pypi_insiders.http_client import HttpClient, HttpError, display_url
from pypi_insiders.simple_api import V1_JSON_MEDIA_TYPE
from pypi_insiders.state_layout import CacheLayout
from pypi_insiders.store import parse_filename
from pypi_insiders.units import FETCH_TIMER

log = logging.getLogger(__name__)

UPSTREAM_TTL = 300.0
_MAX_PAGE = 16 * 1024 * 1024


def _iso(timestamp: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp)) if timestamp else None


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


def upstream_versions(config: Config, distributions: set[str]) -> dict[str, str | None]:
    """Newest public version per distribution, from the disk cache or asked again in parallel."""
    path = CacheLayout(config.paths.cache).upstream_releases
    try:
        cache: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    now = time.time()
    stale = sorted(d for d in distributions
                   if not isinstance(cache.get(d), dict) or now - cache[d].get("checked", 0) > UPSTREAM_TTL)
    if stale:
        with HttpClient(pool_size=8) as client, ThreadPoolExecutor(max_workers=8) as pool:
            lookups = pool.map(lambda d: newest_public(config, d, client), stale)
            for name, found in zip(stale, lookups, strict=True):
                cache[name] = {"checked": now, "version": str(found) if found else None}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps(cache).encode(), durable=False)
        except OSError as error:
            log.debug("cannot cache upstream versions in %s: %s", path, error)
    return {d: cache[d].get("version") for d in distributions}


def _newest_tag(repo: RepoConfig, record: repo_state.RepoState) -> versions.TagVersion | None:
    candidates = versions.tag_versions(record.refs, repo)
    return candidates[-1] if candidates else None


def repo_status(repo: RepoConfig, record: repo_state.RepoState, upstream: str | None) -> dict[str, Any]:
    newest = _newest_tag(repo, record)
    built = max((Version(v) for v in record.built), default=None)
    warning = None
    if upstream and built and Version(upstream) > versions.public_part(built):
        warning = (f"upstream has {record.distribution or repo.distribution} {upstream}, newer than "
                   f"the newest Insiders build {built}")
    last = record.last_build
    return {
        "key": repo.key, "url": display_url(repo.url),
        "distribution": repo.distribution or record.distribution,
        "last_check": _iso(record.last_check), "last_result": record.last_result,
        "newest_tag": newest.tag if newest else None,
        "newest_build": str(built) if built else None,
        "last_build": None if last is None else {
            "tag": last.tag, "version": last.version, "result": last.result,
            "time": _iso(last.time), "files": last.files, "error": last.error},
        "last_error": record.last_error, "failures": record.failures,
        "next_attempt": _iso(record.next_attempt),
        "failed_builds": [{"version": v, "tag": f.tag, "failures": f.failures,
                           "next_attempt": _iso(f.next_attempt), "error": f.error}
                          for v, f in sorted(record.failed_builds.items())],
        "upstream_version": upstream, "warning": warning,
    }


def collect(config: Config) -> dict[str, Any]:
    """Read afresh at every call: the repository list from the config files, each state file."""
    try:
        repos, problem = current_repos(config), None
    except ConfigError as error:  # a broken drop-in: show what was valid at start, and why
        repos, problem = config.repos, "; ".join(error.problems)
    records = {repo.key: repo_state.load(config, repo.key) for repo in repos}
    names = {repo.distribution or records[repo.key].distribution for repo in repos}
    upstream = upstream_versions(config, {n for n in names if n})
    repositories = []
    for repo in repos:
        record = records[repo.key]
        name = repo.distribution or record.distribution
        repositories.append(repo_status(repo, record, upstream.get(name) if name else None))
    return {"generated": _iso(time.time()), "next_run": next_run(), "config_problem": problem,
            "repositories": repositories}


def _cell(value: object) -> str:
    return html.escape("" if value is None else str(value))


def render_html(data: dict[str, Any]) -> str:
    rows = []
    for repo in data["repositories"]:
        build = repo["last_build"] or {}
        failed = next((f["error"] for f in reversed(repo.get("failed_builds", [])) if f.get("error")), None)
        problem = repo["last_error"] or failed or repo["warning"] or ""
        cells = (repo["key"], repo["distribution"], repo["last_check"], repo["newest_tag"],
                 f"{build.get('version', '')} {build.get('result', '')}".strip(), repo["last_result"],
                 repo["next_attempt"] or data["next_run"])
        rows.append("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in cells)
                    + f'<td class="problem">{_cell(problem)}</td></tr>')
    head = "".join(f"<th>{h}</th>" for h in ("repository", "distribution", "last check", "newest tag",
                                               "last build", "result", "next run", "problem"))
    body = "\n".join(rows) or '<tr><td colspan="8">no repositories watched</td></tr>'
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>pypi-insiders status</title>"
            "<style>td,th{padding:2px 8px;text-align:left}.problem{color:#a00}</style></head><body>\n"
            '<p><a href="/">&larr; the index</a></p>\n'
            f"{_index_line(data.get('index'))}"
            f"<h1>Watched repositories</h1>\n{_problem(data.get('config_problem'))}"
            f"<p>Generated {_cell(data['generated'])}; next fetch run: "
            f"{_cell(data['next_run'] or 'unknown')}.</p>\n<table>\n<tr>{head}</tr>\n{body}\n</table>\n"
            "</body></html>\n")


def _index_line(index: dict[str, Any] | None) -> str:
    """The first generation's progress while it runs (the web app adds it, see index/progress.py)."""
    if not index or not index.get("generating"):
        return ""
    return (f'<p class="problem">The index is being generated: {_cell(index.get("projects"))} local '
            f'projects pinned, {_cell(index.get("done"))} files and pages done after '
            f'{_cell(index.get("running_s"))} s; their pages answer 503 until written.</p>\n')


def _problem(text: str | None) -> str:
    return f'<p class="problem">configuration: {_cell(text)}</p>\n' if text else ""


def cli_status(config: Config, *, as_json: bool = False) -> int:
    data = collect(config)
    if as_json:
        print(json.dumps(data, indent=2))
        return 0
    if data["config_problem"]:
        print(f"! configuration: {data['config_problem']}")
    if not data["repositories"]:
        print("no repositories watched")
    for repo in data["repositories"]:
        build = repo["last_build"]
        built = f"{build['version']} ({build['result']} {build['time']})" if build else "none"
        print(f"{repo['key']}: checked {repo['last_check'] or 'never'}, {repo['last_result'] or 'not run'}; "
              f"newest tag {repo['newest_tag'] or '-'}; last build {built}")
        for problem in (repo["last_error"], repo["warning"]):
            if problem:
                print(f"  ! {problem}")
        if repo["next_attempt"]:
            print(f"  next try {repo['next_attempt']} (after {repo['failures']} failure(s))")
        for failed in repo["failed_builds"]:
            print(f"  ! {failed['tag']} failed to build {failed['failures']} time(s); "
                  f"next try {failed['next_attempt']}" + (f": {failed['error']}" if failed["error"] else ""))
    print(f"next run: {data['next_run'] or 'unknown (systemd timer not available)'}")
    return 0
