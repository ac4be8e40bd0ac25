"""The sections of the main file, each parsed into its dataclass, problems collected on the way."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import cast

from packaging.utils import NormalizedName, canonicalize_name

from pypi_insiders import pipconf
from pypi_insiders.config.locations import Locations
from pypi_insiders.config.mirror_keys import mirror_keys
from pypi_insiders.config.model import (
    ANONYMOUS,
    DEFAULT_MAX_BODY,
    FALLBACKS,
    PUBLISH_TARGETS,
    SANDBOX_KINDS,
    AccessConfig,
    Anonymous,
    Fallback,
    FetchConfig,
    IndexConfig,
    PathsConfig,
    PublishTarget,
    SandboxKind,
    ServerConfig,
    UploadConfig,
    UpstreamConfig,
    WebhooksConfig,
    default_processes,
)
from pypi_insiders.config.table import (
    Table,
    between,
    check_http_url,
    duration,
    listen_check,
    one_of,
    parse_listen,
    positive,
    resolve,
)
from pypi_insiders.http_client import display_url
from pypi_insiders.project_names import is_valid


def server(root: Table) -> ServerConfig:
    t = root.table("server")
    default = ServerConfig
    host, port = parse_listen(t.get("listen", str, f"{default.host}:{default.port}", listen_check))
    threads = t.get("threads", int, default.threads, between(1, 256))
    processes = t.get("processes", int, default_processes(), between(1, 64))
    proxy = t.get("trusted_proxy", str, "", _ip_address_check)
    access_log = t.get("access_log", bool, default.access_log)
    t.finish()
    return ServerConfig(host=host, port=port, threads=threads, processes=processes,
                        trusted_proxy=proxy or None, access_log=access_log)


def _ip_address_check(value: str) -> str | None:
    """One address, never a wildcard: believing anyone's X-Forwarded-For lets anyone pick theirs."""
    if not value:
        return None
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"not an IP address: {value!r} (the reverse proxy's own address, e.g. 127.0.0.1)"
    return None


Sources = dict[str, str]
_MB = 1024 * 1024


def paths(root: Table, locations: Locations, sources: Sources) -> PathsConfig:
    """[paths]: each directory set by its key, else under `data`, else the default location."""
    t = root.table("paths")
    base = locations.config_dir
    default = f"default ({locations.name} layout)"
    data_text = t.get("data", str, "")
    data = resolve(base, data_text) if data_text else locations.data
    sources["data"] = "paths.data" if data_text else default

    def pick(key: str, fallback: Path) -> Path:
        text = t.get(key, str, "")
        sources[key] = f"paths.{key}" if text else sources["data"] if data_text else default
        return resolve(base, text) if text else fallback

    result = PathsConfig(store=pick("store", data / "store"), index=pick("index", data / "index"),
                         state=data, cache=pick("cache", data / "cache" if data_text else locations.cache))
    t.finish()
    return result


def _beside(key: str, text: str, locations: Locations, sources: Sources, piece: str) -> Path:
    """A config-side piece (named `piece` in the directory): its key, else beside the config file."""
    sources[piece] = key if text else f"beside the config file, in {locations.config_dir}"
    return resolve(locations.config_dir, text) if text else locations.config_dir / piece


def index(root: Table) -> IndexConfig:
    t = root.table("index")
    rescan = t.get("rescan_interval", float, IndexConfig.rescan_interval, positive)
    debounce = t.get("debounce", float, IndexConfig.debounce, between(0, 10))
    t.finish()
    yanked: dict[NormalizedName, dict[str, str]] = {}
    y = root.table("yank")
    for project, versions in y.data.items():
        y.seen.add(project)
        if not isinstance(versions, dict):
            y.problem(project, 'expected a table of "version" = "reason"')
            continue
        entries = yanked.setdefault(canonicalize_name(project), {})
        for version, reason in versions.items():
            if not isinstance(reason, str):
                y.problem(f"{project}.{version}", "expected a reason string (may be empty)")
            else:
                entries[version] = reason
    return IndexConfig(rescan_interval=rescan, debounce=debounce, yanked=yanked)


def _not_own(listen: pipconf.Listen) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if message := check_http_url(value):
            return message
        if pipconf.is_own_index(value, listen):
            return f"{display_url(value)} is this index itself (listen = {listen[0]}:{listen[1]})"
        return None
    return check


def upstream(root: Table, server: ServerConfig) -> UpstreamConfig:
    t = root.table("upstream")
    listen = (server.host, server.port)
    url = t.get("url", str, "", lambda v: _not_own(listen)(v) if v else None)
    fallback = cast(Fallback, t.get("fallback", str, UpstreamConfig.fallback, one_of(*FALLBACKS)))
    timeout = t.get("timeout", float, UpstreamConfig.timeout, positive)
    ttl = t.get("cache_ttl", float, UpstreamConfig.cache_ttl,
                lambda v: None if v >= 0 else "must be 0 or more")
    mirror = mirror_keys(t)
    t.finish()
    if url:
        return UpstreamConfig(url=url.rstrip("/") + "/", url_source="config", fallback=fallback,
                              timeout=timeout, cache_ttl=ttl, **mirror)
    found = pipconf.configured_index_url(listen=listen)
    return UpstreamConfig(url=found.url, url_source=found.source, fallback=fallback, timeout=timeout,
                          cache_ttl=ttl, skipped=found.skipped, **mirror)


def upload(root: Table, locations: Locations, sources: Sources) -> UploadConfig:
    t = root.table("upload")
    enabled = t.get("enabled", bool, UploadConfig.enabled)
    users = t.get("users_file", str, "")
    max_mb = t.get("max_size_mb", int, UploadConfig.max_size // _MB,
                   lambda v: None if v > 0 else "must be greater than 0")
    t.finish()
    users_file = _beside("upload.users_file", users, locations, sources, "users")
    return UploadConfig(enabled=enabled, users_file=users_file, max_size=max_mb * _MB)


def fetch(root: Table, locations: Locations, sources: Sources) -> FetchConfig:
    t = root.table("fetch")
    repos_dir = t.get("repos_dir", str, "")
    creds_dir = t.get("credentials_dir", str, "")
    fetch = FetchConfig(
        repos_dir=_beside("fetch.repos_dir", repos_dir, locations, sources, "repos.d"),
        credentials_dir=_beside("fetch.credentials_dir", creds_dir, locations, sources, "credentials"),
        build_timeout=t.get("build_timeout", float, FetchConfig.build_timeout, positive),
        fetch_timeout=t.get("fetch_timeout", float, FetchConfig.fetch_timeout, positive),
        publish=cast(PublishTarget, t.get("publish", str, FetchConfig.publish, one_of(*PUBLISH_TARGETS))),
        upload_url=t.get("upload_url", str, "", lambda v: check_http_url(v) if v else None) or None,
        upload_username=t.get("upload_username", str, FetchConfig.upload_username),
        upload_credential=t.get("upload_credential", str, "") or None,
        backoff_max=t.get("backoff_max", float, FetchConfig.backoff_max, positive),
        interval=duration(t, "interval", FetchConfig.interval),
        sandbox=cast(SandboxKind, t.get("sandbox", str, FetchConfig.sandbox, one_of(*SANDBOX_KINDS))),
        build_env=_build_env(t.table("build_env")),
    )
    t.finish()
    if fetch.publish == "upload" and not fetch.upload_url:
        t.problem("publish", '"upload" needs fetch.upload_url')
    return fetch


def _build_env(t: Table) -> dict[str, str]:
    """pip's settings for build requirements, in the configuration so that the fetch service and
    `sudo pypi-insiders update` use the same ones (a unit drop-in would reach the service only)."""
    settings = {}
    for key, value in t.data.items():
        t.seen.add(key)
        if not re.fullmatch(r"PIP_[A-Z0-9_]+", key):
            t.problem(key, "only pip's settings (PIP_...) can be given to builds")
        elif not isinstance(value, str):
            t.problem(key, f"expected a string, got {value!r}")
        else:
            settings[key] = value
    return settings


def default_anonymous(server: ServerConfig) -> tuple[Anonymous, str]:
    """Open to readers only where nobody else can reach the port: loopback without a proxy in front."""
    if server.trusted_proxy:
        return "none", "default: a reverse proxy stands in front (server.trusted_proxy)"
    if server.host == "localhost" or ipaddress.ip_address(server.host).is_loopback:
        return AccessConfig.anonymous, AccessConfig.reason
    return "none", f"default: the index listens on {server.host}, beyond loopback"


def access(root: Table, server: ServerConfig) -> AccessConfig:
    t = root.table("access")
    anonymous = t.get("anonymous", str, "", lambda v: one_of(*ANONYMOUS)(v) if v else None)
    public = t.get("public_projects", list, [])
    names: set[NormalizedName] = set()
    for number, value in enumerate(public):
        if not isinstance(value, str) or not is_valid(value):
            t.problem(f"public_projects[{number}]", f"not a project name: {value!r}")
        else:
            names.add(canonicalize_name(value))
    t.finish()
    if anonymous:
        return AccessConfig(anonymous=cast(Anonymous, anonymous), reason="set by access.anonymous",
                            public_projects=frozenset(names))
    default, reason = default_anonymous(server)
    return AccessConfig(anonymous=default, reason=reason, public_projects=frozenset(names))


_MAX_BODY_LIMIT = 64 * 1024 * 1024  # GitHub's own cap is 25 MB; past this a body is not a hint


def webhooks(root: Table, locations: Locations, sources: Sources) -> WebhooksConfig:
    """[webhooks]: off by default; secrets live in a directory of their own, beside the config."""
    t = root.table("webhooks")
    enabled = t.get("enabled", bool, False)
    max_body = t.get("max_body", int, DEFAULT_MAX_BODY,
                     lambda v: None if 1024 <= v <= _MAX_BODY_LIMIT
                     else f"must be 1024 to {_MAX_BODY_LIMIT} bytes")
    secrets = t.get("secrets_dir", str, "")
    t.finish()
    secrets_dir = _beside("webhooks.secrets_dir", secrets, locations, sources, "webhook-secrets")
    return WebhooksConfig(secrets_dir=secrets_dir, enabled=enabled, max_body=max_body)
