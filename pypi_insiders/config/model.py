"""The parsed configuration: frozen dataclasses, built once by `config.load` and passed around.

The defaults live here and only here: the parsers in `sections` and `repo_tables` read them
from the classes (`ServerConfig.threads`), so a default is changed in one place. Every class is
keyword-only: most hold several fields of one type (two timeouts, four paths), which a
positional call would silently swap.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from packaging.requirements import Requirement
from packaging.utils import NormalizedName
from packaging.version import Version

DEFAULT_PORT = 31411
# `[server] processes` when unset: one per core this process may run on, at most this many
# (beyond four, nginx in front serves the static files better than more Python processes).
MAX_DEFAULT_PROCESSES = 4
Fallback = Literal["redirect", "proxy", "mirror", "off"]
FALLBACKS: tuple[Fallback, ...] = get_args(Fallback)
BuildPolicy = Literal["new", "latest"]
PublishTarget = Literal["store", "upload"]
PUBLISH_TARGETS: tuple[PublishTarget, ...] = get_args(PublishTarget)
BUILD_POLICIES: tuple[BuildPolicy, ...] = get_args(BuildPolicy)
# What callers without credentials get for mirrored names ("": decided by [access] anonymous).
MirrorAnonymous = Literal["mirror", "redirect", "none", ""]
MIRROR_ANONYMOUS: tuple[MirrorAnonymous, ...] = ("mirror", "redirect", "none")
CooldownUnknown = Literal["hide", "show"]


def default_processes() -> int:
    """One waitress process per usable core (systemd's CPUAffinity= and cpusets count), capped."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_DEFAULT_PROCESSES))


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    threads: int = 8
    # waitress processes sharing the listening socket: one process is held to one core by the GIL.
    processes: int = field(default_factory=default_processes)
    # The reverse proxy's address: only its X-Forwarded-For/-Proto are believed (None: nobody's).
    trusted_proxy: str | None = None
    # One journald entry (or stderr line) per read of a local project and per refusal.
    access_log: bool = True


@dataclass(frozen=True, kw_only=True)
class PathsConfig:
    """Where things live. `state` holds what cannot be rebuilt; `index` and `cache` can."""

    store: Path
    index: Path
    state: Path
    cache: Path


@dataclass(frozen=True, kw_only=True)
class IndexConfig:
    rescan_interval: float = 300.0
    debounce: float = 0.2
    # project -> version -> reason (PEP 592); an empty reason still yanks.
    yanked: Mapping[NormalizedName, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class UpstreamConfig:
    url: str | None
    # Where `url` came from, for logs and `check-config`: "config", "--upstream", a pip source.
    url_source: str
    fallback: Fallback = "redirect"
    timeout: float = 10.0
    cache_ttl: float = 600.0
    # pip's sources passed over because they name this index itself, one line each, to be said
    # by `check-config` and at start.
    skipped: tuple[str, ...] = ()
    # The mirror's settings (`fallback = "mirror"`); read by nothing else.
    offline: bool = False  # never open a connection: pages from disk, listing files on disk
    max_size: int = 10 * 1024**3  # bytes of files kept; least recently used evicted beyond (0: no cap)
    min_free: int = 1024**3  # below this much free disk a file is verified and passed through, unstored
    max_file_size: int = 4 * 1024**3  # an upstream file larger than this is refused (0: no limit)
    file_timeout: float = 900.0  # seconds one whole file download may take (0: no deadline)
    keep_removed: bool = False  # keep files no stored page lists any more (upstream deleted them)
    cooldown: float = 0.0  # seconds a file must have been public before it is listed (0: off)
    cooldown_exempt: frozenset[NormalizedName] = frozenset()
    cooldown_unknown: CooldownUnknown = "hide"  # files without upload-time: hidden, as uv and pip do
    allow: frozenset[NormalizedName] = frozenset()  # not empty: only these names are mirrored
    deny: tuple[Requirement, ...] = ()  # a bare name refuses the project; a specifier hides versions
    anonymous: MirrorAnonymous = ""


@dataclass(frozen=True, kw_only=True)
class UploadConfig:
    enabled: bool = False
    users_file: Path
    max_size: int = 100 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class RepoConfig:
    """One watched repository. `key` is its table name: the original's NAMESPACE/PROJECT or a slug."""

    key: str
    url: str
    source_file: Path | None
    distribution: NormalizedName | None = None
    subdirectory: str = ""
    tag_pattern: re.Pattern[str] | None = None
    build: BuildPolicy = "new"
    min_version: Version | None = None
    credential: str | None = None
    username: str | None = None
    # A file in `webhooks.secrets_dir` (never the git credentials directory): one secret a line.
    webhook_secret: str | None = None


SandboxKind = Literal["bwrap", "off"]
SANDBOX_KINDS: tuple[SandboxKind, ...] = get_args(SandboxKind)


@dataclass(frozen=True, kw_only=True)
class FetchConfig:
    repos_dir: Path
    credentials_dir: Path
    build_timeout: float = 1800.0
    fetch_timeout: float = 300.0
    publish: PublishTarget = "store"
    upload_url: str | None = None
    upload_username: str = "__token__"
    upload_credential: str | None = None
    backoff_max: float = 86400.0
    # Seconds between the runs of `pypi-insiders watch` (the timer's own schedule is its unit's).
    interval: float = 3600.0
    # "bwrap": every build in a bubblewrap sandbox (fetch/sandbox.py); "off" only when set.
    sandbox: SandboxKind = "bwrap"
    # pip's settings (PIP_*) for installing build requirements: the service's and `update`'s alike
    build_env: Mapping[str, str] = field(default_factory=dict)


DEFAULT_MAX_BODY = 1024 * 1024  # tag events are a few KiB; this leaves room for branch pushes


@dataclass(frozen=True, kw_only=True)
class WebhooksConfig:
    """`POST /-/hooks/KEY`: a forge's push wakes the fetcher. Off unless enabled: the route 404s."""

    secrets_dir: Path
    enabled: bool = False
    max_body: int = DEFAULT_MAX_BODY


Anonymous = Literal["read", "none"]
ANONYMOUS: tuple[Anonymous, ...] = get_args(Anonymous)


@dataclass(frozen=True, kw_only=True)
class AccessConfig:
    """Who may read local projects without credentials, and which local projects shadow public ones."""

    anonymous: Anonymous = "read"
    # Why `anonymous` has its value, for `check-config` and the start-up log.
    reason: str = "default: the index listens on loopback only"
    # Local Insiders builds of public projects: whoever may not read one gets upstream's project.
    public_projects: frozenset[NormalizedName] = frozenset()


@dataclass(frozen=True, kw_only=True)
class Config:
    path: Path | None
    server: ServerConfig
    paths: PathsConfig
    index: IndexConfig
    upstream: UpstreamConfig
    upload: UploadConfig
    fetch: FetchConfig
    repos: tuple[RepoConfig, ...] = ()
    # piece ("config", "store", "repos.d", ...) -> where its location came from, for check-config.
    sources: Mapping[str, str] = field(default_factory=dict)
    access: AccessConfig = AccessConfig()
    webhooks: WebhooksConfig = WebhooksConfig(secrets_dir=Path("/etc/pypi-insiders/webhook-secrets"))

    def repo(self, key: str) -> RepoConfig | None:
        return next((r for r in self.repos if r.key == key), None)

    def mirror_anonymous(self) -> tuple[MirrorAnonymous, str]:
        """What anonymous callers get for mirrored names, and why: the mirror spends disk and
        bandwidth for its caller, so beyond loopback only callers with credentials use it."""
        if self.upstream.anonymous:
            return self.upstream.anonymous, "set by upstream.anonymous"
        if self.access.anonymous == "read":
            return "mirror", "default: access.anonymous is read"
        return "redirect", "default: anonymous callers may not read ([access] anonymous)"
