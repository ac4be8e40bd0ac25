"""The on-disk layout of the state and cache directories: every file an instance keeps there.

The state directory (`config.paths.state`, set by `[paths] data`) holds what cannot be rebuilt:
losing it loses history or breaks a promise (a name never reused, a name never given away).
The cache directory (`config.paths.cache`) holds what can: deleting it costs time, never
correctness.

    <state>/published-filenames.txt   every filename ever published; never reused (`store`)
    <state>/pinned-projects.txt       names served as local once; never given to upstream
    <state>/yanked.json               yanks made at run time (`yank`, the yank API), and its lock
    <state>/provenance.jsonl          repository, tag and commit of each fetched file
    <state>/repos/<slug>.json         one watched repository's state (tags, builds, back-off)
    <state>/update.lock               held by the update run (timer or manual)
    <state>/watch.lock                held by `pypi-insiders watch`
    <state>/background/<role>.*       pid, log and lock of a server or watcher started in the
                                      background (without systemd)
    <state>/serve.restart-only.json   the restart-only settings the running index started with
    <state>/known_hosts               SSH host keys of the repositories' servers
    <state>/users-last-use.json       when each upload/read user last authenticated
    <state>/failed-logins.json        failed logins, shared by the serving processes
    <state>/fetch-queue/<slug>.queued repositories a webhook queued (`fetch_queue`; watched by
                                      pypi-insiders-fetch.path)
    <state>/hook-deliveries/          delivery ids seen and each repository's last delivery
                                      (`deliveries`)
    <cache>/index.sqlite3             the metadata cache behind the generated index
    <cache>/first-generation.json     the first generation's progress, while it runs
    <cache>/upstream-releases.json    newest public versions, for /status
    <cache>/status.json               the status report /status reads (the service's parent writes it)
    <cache>/mirrors/<slug>.git        bare git mirrors of the watched repositories
    <cache>/builds/                   one work directory per build in progress
    <cache>/pip/, <cache>/build-envs/ the build environments' downloads and templates
    serve.lock, in each directory     held by the serving instance (`directories`, which names it
                                      for the index directory too)
    stores/<instance>/, in each       the state and cache of a store named with `serve --store`
                                      (`config.loader.with_store`): a layout of its own

Every module asks this one for its paths instead of joining names onto `config.paths.state`.
To add a file: a property here (a method when the name has a parameter), a line in the tree
above saying what it holds, and use it where the file is read and written.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path


def slug(key: str) -> str:
    """A file name for a repository key; the hash keeps `a/b` and `a-b` apart."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", key).strip(".-")[:80] or "repo"
    return f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class StateLayout:
    """The state directory: nothing in it is derived; back it up with the store."""

    root: Path

    @property
    def published_filenames(self) -> Path:
        return self.root / "published-filenames.txt"

    @property
    def pinned_projects(self) -> Path:
        return self.root / "pinned-projects.txt"

    @property
    def yanks(self) -> Path:
        return self.root / "yanked.json"

    @property
    def yanks_lock(self) -> Path:
        return self.root / ".yanked.json.lock"

    @property
    def provenance(self) -> Path:
        return self.root / "provenance.jsonl"

    @property
    def repos(self) -> Path:
        return self.root / "repos"

    def repo_state(self, key: str) -> Path:
        return self.repos / f"{slug(key)}.json"

    @property
    def update_lock(self) -> Path:
        return self.root / "update.lock"

    @property
    def watch_lock(self) -> Path:
        return self.root / "watch.lock"

    @property
    def background(self) -> Path:
        return self.root / "background"

    @property
    def running_settings(self) -> Path:
        return self.root / "serve.restart-only.json"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def users_last_use(self) -> Path:
        return self.root / "users-last-use.json"

    @property
    def failed_logins(self) -> Path:
        return self.root / "failed-logins.json"

    @property
    def fetch_queue(self) -> Path:
        return self.root / "fetch-queue"

    @property
    def hook_deliveries(self) -> Path:
        return self.root / "hook-deliveries"


@dataclass(frozen=True)
class CacheLayout:
    """The cache directory: everything in it can be deleted and is rebuilt when needed."""

    root: Path

    @property
    def metadata_db(self) -> Path:
        return self.root / "index.sqlite3"

    @property
    def first_generation(self) -> Path:
        return self.root / "first-generation.json"

    @property
    def upstream_releases(self) -> Path:
        return self.root / "upstream-releases.json"

    @property
    def status_snapshot(self) -> Path:
        return self.root / "status.json"

    @property
    def mirrors(self) -> Path:
        return self.root / "mirrors"

    def mirror(self, key: str) -> Path:
        return self.mirrors / f"{slug(key)}.git"

    @property
    def builds(self) -> Path:
        return self.root / "builds"

    @property
    def pip(self) -> Path:
        return self.root / "pip"

    @property
    def build_envs(self) -> Path:
        return self.root / "build-envs"
