"""`pypi-insiders serve`: the processes and threads that run the index, and who touches what.

Processes: the parent generates the index, watches the store and talks to systemd; with
`[server] processes` above 1 it forks workers (`processes.py`) onto the one listening socket,
which serve the same files from disk and never generate, watch or notify.

Threads of the parent, and what each may touch:
- main: waitress's socket loop; signal handlers only set `reload_requested` or raise SystemExit.
- waitress's request threads: the app, which reads one frozen config snapshot and the page cache.
- `start_heartbeat` (until READY=1): reads `generator.progress()` without its lock, on purpose,
  and sends EXTEND_TIMEOUT_USEC. It is the one thread alive when workers fork; it holds no lock.
- `_first_scan`: the first `generator.generate_all()` under the generator's lock, while the
  index is already served (every local name pinned before binding; a local project without
  its page yet gets 503 + Retry-After, `index.progress`), then starts the watcher and sends READY=1.
- `report_progress` (until then): the first generation's progress into the file `/status` reads.
- `keep_fresh` (`status_refresh`): computes the status report (state files, upstream for
  `public_projects`, systemctl; the mirror's counters, read-only, and a scan of its files) and
  writes the snapshot `/status` reads; reads `config` only.
- `keep_swept` (`mirror_sweep`, with fallback = "mirror"): the mirror's sweep every five
  minutes and when a worker asks (`mirror/sweep-wanted`); reads `config` only.
- the store watcher's observer and debounce threads: `generator.update_paths()` under that lock.
- `reloader`: on SIGHUP, the new config into the app (a snapshot swap), the generator (its lock)
  and the watcher.
- `_watchdog`: reads the watcher's and workers' liveness and connects to our own socket.

A worker has the main thread, waitress's request threads and its own `reloader`.
"""

from __future__ import annotations

from pypi_insiders.service.index_service import serve

__all__ = ["serve"]
