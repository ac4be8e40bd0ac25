"""What `status` and `/status` show of webhooks: each repository's last delivery, the fetch queue,
and the state of pypi-insiders-fetch.path (one stopped by its trigger limit must be visible).

Read from the files the index writes (`deliveries`, `fetch_queue`) and one `systemctl show`,
asked only when systemd runs; nothing here fails the page: a missing piece reads as unknown.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from pypi_insiders import deliveries, fetch_queue
from pypi_insiders.config import Config, RepoConfig
from pypi_insiders.status_report import Delivery, QueuedFetch, Webhooks
from pypi_insiders.units import FETCH_PATH, SYSTEMD_RUNTIME
from pypi_insiders.wording import utc

_QUERY_TIMEOUT = 5.0
_PROPERTIES = "LoadState,ActiveState,SubState,Result"


def path_unit_state(runtime: Path = SYSTEMD_RUNTIME) -> str | None:
    """"active (waiting)", "failed (trigger-limit-hit)", ...; None without systemd or the unit."""
    if not runtime.is_dir():
        return None
    try:
        done = subprocess.run(["systemctl", "show", FETCH_PATH, "-p", _PROPERTIES], capture_output=True,
                              text=True, timeout=_QUERY_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    props = dict(line.partition("=")[::2] for line in done.stdout.splitlines())
    if done.returncode != 0 or props.get("LoadState") != "loaded":
        return None
    state = f"{props.get('ActiveState', '?')} ({props.get('SubState', '?')})"
    result = props.get("Result", "success")
    return state if result in ("success", "") else f"{state}, {result}"


def last_delivery(config: Config, repo: RepoConfig) -> Delivery | None:
    found = deliveries.last(deliveries.deliveries_dir(config.paths.state), repo.key)
    if found is None:
        return None
    return Delivery(time=utc(found.time), forge=found.forge, event=found.event,
                    delivery=found.delivery, outcome=found.outcome)


def collect(config: Config) -> Webhooks:
    """The webhooks part of the status: on or off, the queue, the path unit."""
    queue = fetch_queue.pending(fetch_queue.queue_dir(config.paths.state))
    return Webhooks(enabled=config.webhooks.enabled,
                    queue=tuple(QueuedFetch(key=key, queued=utc(when)) for key, when in queue),
                    path_unit=path_unit_state())


def inputs(config: Config) -> list[Path]:
    """The directories a delivery or a claim changes (entries are replaced atomically, which
    changes the directory): the status snapshot is written again when one of them changed."""
    return [deliveries.deliveries_dir(config.paths.state) / "last", fetch_queue.queue_dir(config.paths.state)]


def describe_delivery(last: Delivery | None) -> str:
    """One line of a repository's last delivery, for the command and the page."""
    if last is None:
        return "none"
    return f"{last.time} {last.forge} {last.event or '-'}: {last.outcome}"


def lines(data: Webhooks | None) -> list[str]:
    """The command's lines about webhooks (none while they are off and nothing is queued)."""
    if data is None or (not data.enabled and not data.queue):
        return []
    queued = ", ".join(f"{q.key} (since {q.queued})" for q in data.queue) or "empty"
    unit = data.path_unit or "unknown (systemd not available)"
    return [f"webhooks: {'enabled' if data.enabled else 'disabled'}; fetch queue: {queued}; "
            f"{FETCH_PATH}: {unit}"]
