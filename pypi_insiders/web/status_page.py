"""`/status` and `/status.json`: the snapshot the service's parent wrote, as this caller may see it.

The report (`status_report`) is computed off the request path; here it is only filtered
(`access.Policy.status_allowed`) and shown, with the first generation's progress while it
runs (`index/progress.py`). Nothing here asks upstream or runs a program.
"""

from __future__ import annotations

import html
import json

from pypi_insiders.index.progress import Progress
from pypi_insiders.status_report import MirrorStatus, RepoStatus, StatusReport, Webhooks
from pypi_insiders.wording import size

RETRY_AFTER = 2  # seconds, until the first snapshot: the parent writes it right after it starts
_COLUMNS = ("repository", "distribution", "last check", "newest tag", "last build", "result", "next run",
            "last webhook", "problem")


def as_json(report: StatusReport, first: Progress | None) -> bytes:
    """The report and the first generation's progress; `mirror` only while the mirror runs."""
    index = {"generating": first is not None, **(first.as_status() if first else {})}
    shown = report.as_json()
    if shown.get("mirror") is None:
        shown.pop("mirror", None)
    return json.dumps({**shown, "index": index}, indent=1, default=str).encode()


def render_html(report: StatusReport, first: Progress | None = None) -> str:
    rows = "\n".join(_row(repo, report.next_run) for repo in report.repositories)
    body = rows or '<tr><td colspan="9">no repositories watched</td></tr>'
    head = "".join(f"<th>{h}</th>" for h in _COLUMNS)
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>pypi-insiders status</title>"
            "<style>td,th{padding:2px 8px;text-align:left}.problem{color:#a00}</style></head><body>\n"
            '<p><a href="/">&larr; the index</a></p>\n'
            f"{_index_line(first)}"
            f"<h1>Watched repositories</h1>\n{_problem(report.config_problem)}"
            f"<p>Generated {_cell(report.generated)}; next fetch run: "
            f"{_cell(report.next_run or 'unknown')}.</p>\n{_webhooks(report.webhooks)}"
            f"<table>\n<tr>{head}</tr>\n{body}\n</table>\n"
            f"{_mirror(report.mirror)}"
            "</body></html>\n")


def _row(repo: RepoStatus, next_run: str | None) -> str:
    build = repo.last_build
    built = f"{build.version} {build.result}" if build else ""
    failed = next((f.error for f in reversed(repo.failed_builds) if f.error), None)
    problem = repo.last_error or failed or repo.warning or ""
    hook = repo.last_delivery
    delivered = f"{hook.time} {hook.forge} {hook.event or '-'}: {hook.outcome}" if hook else None
    cells = (repo.key, repo.distribution, repo.last_check, repo.newest_tag, built, repo.last_result,
             repo.next_attempt or next_run, delivered)
    return ("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in cells)
            + f'<td class="problem">{_cell(problem)}</td></tr>')


def _cell(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _index_line(first: Progress | None) -> str:
    """The first generation's progress while it runs (see index/progress.py)."""
    if first is None:
        return ""
    shown = first.as_status()
    return (f'<p class="problem">The index is being generated: {_cell(shown["projects"])} local '
            f'projects pinned, {_cell(shown["done"])} files and pages done after '
            f'{_cell(shown["running_s"])} s; their pages answer 503 until written.</p>\n')


def _problem(text: str | None) -> str:
    return f'<p class="problem">configuration: {_cell(text)}</p>\n' if text else ""


def _webhooks(hooks: Webhooks | None) -> str:
    """Push-triggered builds, while they are on or something is queued: the queue and the path unit."""
    if hooks is None or (not hooks.enabled and not hooks.queue):
        return ""
    queued = ", ".join(f"{q.key} (since {q.queued})" for q in hooks.queue) or "empty"
    return (f"<p>Webhooks {'enabled' if hooks.enabled else 'disabled'}; fetch queue: {_cell(queued)}; "
            f"path unit: {_cell(hooks.path_unit or 'unknown')}.</p>\n")


def _mirror(mirror: MirrorStatus | None) -> str:
    """The caching mirror (`fallback = "mirror"`): its disk as last scanned, and its counters."""
    if mirror is None:
        return ""
    cap = f"of {size(mirror.max_size)}" if mirror.max_size else "(no max_size)"
    free = size(mirror.free_disk) if mirror.free_disk is not None else "unknown"
    rows = "".join(f"<tr><th>{name}</th><td>{_cell(value)}</td></tr>\n" for name, value in (
        ("used", f"{size(mirror.bytes_used)} {cap}"), ("files", mirror.files),
        ("free disk", f"{free} (below {size(mirror.min_free)} files pass through unstored)"),
        ("hits", mirror.hits), ("misses", mirror.misses),
        ("from upstream", size(mirror.bytes_from_upstream)),
        ("stale pages served", mirror.stale_pages_served),
        ("offline", "yes: upstream is never contacted" if mirror.offline else "no")))
    error = mirror.last_upstream_error
    if error:
        when = mirror.last_upstream_error_at or "unknown"
        rows += (f'<tr><th>last upstream error</th><td class="problem">{_cell(when)}: {_cell(error)}'
                 "</td></tr>\n")
    else:
        rows += "<tr><th>last upstream error</th><td>none</td></tr>\n"
    return (f"<h1>Mirror</h1>\n<p>Disk scanned {_cell(mirror.scanned_at or 'never')}.</p>\n"
            f"<table>\n{rows}</table>\n")
