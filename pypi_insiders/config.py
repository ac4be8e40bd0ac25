"""Configuration: one TOML file (plus repository drop-ins) parsed once into frozen dataclasses.

Nothing else in the package reads TOML or the environment for settings. Every problem is
collected and reported together, each with the file and dotted key at fault, so an
administrator fixes a config in one pass instead of one error per restart.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import pwd
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, get_args
from urllib.parse import urlsplit

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from pypi_insiders import pipconf
from pypi_insiders.errors import ConfigError
from pypi_insiders.privileges import SERVICE_USER

DEFAULT_CONFIG = Path("/etc/pypi-insiders/config.toml")
DEFAULT_PORT = 31411
Fallback = Literal["redirect", "proxy", "off"]
FALLBACKS: tuple[Fallback, ...] = get_args(Fallback)
BuildPolicy = Literal["new", "latest"]
PublishTarget = Literal["store", "upload"]


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    threads: int = 8
    # waitress processes sharing the listening socket: one process is held to one core by the GIL.
    processes: int = 1
    # The reverse proxy's address: only its X-Forwarded-For/-Proto are believed (None: nobody's).
    trusted_proxy: str | None = None


@dataclass(frozen=True)
class PathsConfig:
    """Where things live. `state` holds what cannot be rebuilt; `index` and `cache` can."""

    store: Path
    index: Path
    state: Path
    cache: Path


@dataclass(frozen=True)
class IndexConfig:
    rescan_interval: float = 300.0
    debounce: float = 0.2
    # project -> version -> reason (PEP 592); an empty reason still yanks.
    yanked: Mapping[NormalizedName, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class UpstreamConfig:
    url: str | None
    # Where `url` came from, for logs and `check-config`: "config", "--upstream", a pip source.
    url_source: str
    fallback: Fallback = "redirect"
    timeout: float = 10.0
    cache_ttl: float = 600.0


@dataclass(frozen=True)
class UploadConfig:
    enabled: bool
    users_file: Path
    max_size: int = 100 * 1024 * 1024


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class Config:
    path: Path | None
    server: ServerConfig
    paths: PathsConfig
    index: IndexConfig
    upstream: UpstreamConfig
    upload: UploadConfig
    fetch: FetchConfig
    repos: tuple[RepoConfig, ...] = ()

    def repo(self, key: str) -> RepoConfig | None:
        return next((r for r in self.repos if r.key == key), None)


# --------------------------------------------------------------------------- defaults


def _is_root() -> bool:
    """Root and the units' service user share the system layout (/var/lib, /var/cache, /etc)."""
    if os.geteuid() == 0:
        return True
    try:
        return pwd.getpwuid(os.geteuid()).pw_name == SERVICE_USER
    except KeyError:  # a uid without a passwd entry (a container, a dynamic user)
        return False


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var, "")
    return Path(value) if value.startswith("/") else Path.home() / fallback


def default_paths() -> tuple[PathsConfig, Path]:
    """System paths for root (the service layout), XDG paths for anyone else; plus the config dir."""
    if _is_root():
        data = Path("/var/lib/pypi-insiders")
        paths = PathsConfig(data / "store", data / "index", data, Path("/var/cache/pypi-insiders"))
        return paths, DEFAULT_CONFIG.parent
    data = _xdg("XDG_DATA_HOME", ".local/share") / "pypi-insiders"
    cache = _xdg("XDG_CACHE_HOME", ".cache") / "pypi-insiders"
    conf = _xdg("XDG_CONFIG_HOME", ".config") / "pypi-insiders"
    return PathsConfig(data / "store", data / "index", data, cache), conf


def config_path(explicit: str | None) -> tuple[Path, bool]:
    """The config file to read and whether it must exist (it must when named explicitly)."""
    if explicit:
        return Path(explicit), True
    from_env = os.environ.get("PYPI_INSIDERS_CONFIG", "")
    if from_env:
        return Path(from_env), True
    return DEFAULT_CONFIG, False


# --------------------------------------------------------------------------- validation


T = TypeVar("T")


class _Table:
    """A view of one TOML table that records problems with their dotted path instead of raising."""

    def __init__(self, data: Mapping[str, Any], where: str, problems: list[str], prefix: str) -> None:
        self.data, self.where, self.problems, self.prefix = data, where, problems, prefix
        self.seen: set[str] = set()

    def path(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.where}: {self.path(key)}: {message}")

    def get(self, key: str, kind: type[T], default: T, check: Callable[[T], str | None] | None = None) -> T:
        self.seen.add(key)
        if key not in self.data:
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.problem(key, f"expected {_type_name(kind)}, got {_type_name(type(value))} {value!r}")
            return default
        message = check(value) if check else None
        if message:
            self.problem(key, message)
            return default
        return value

    def table(self, key: str) -> _Table:
        self.seen.add(key)
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            self.problem(key, f"expected a table, got {_type_name(type(value))}")
            value = {}
        return _Table(value, self.where, self.problems, f"{self.path(key)}.")

    def finish(self, known: set[str] | None = None) -> None:
        """Unknown keys are errors: a typo must not silently fall back to a default."""
        allowed = known if known is not None else self.seen
        for key in self.data:
            if key not in allowed:
                hint = difflib.get_close_matches(key, sorted(allowed), n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else ""
                self.problem(key, f"unknown key{extra}")


def _type_name(kind: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            dict: "a table", list: "an array"}.get(kind, kind.__name__)


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _one_of(*choices: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in choices else f"must be one of {', '.join(map(repr, choices))}, got {value!r}"
    return check


def check_http_url(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"not an http(s) URL: {value!r}"
    return None


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT`, `[v6]:PORT` or `:PORT`; raises ValueError with a readable reason."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        msg = f"expected HOST:PORT, got {value!r}"
        raise ValueError(msg)
    port = int(port_text)
    if not 0 <= port <= 65535:
        msg = f"port out of range in {value!r}"
        raise ValueError(msg)
    host = host.strip("[]") or "127.0.0.1"
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            msg = f"expected an IP address or localhost, got {host!r}"
            raise ValueError(msg) from None
    return host, port


def _listen_check(value: str) -> str | None:
    try:
        parse_listen(value)
    except ValueError as error:
        return str(error)
    return None


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


# --------------------------------------------------------------------------- sections


def _server(root: _Table) -> ServerConfig:
    t = root.table("server")
    host, port = parse_listen(t.get("listen", str, f"127.0.0.1:{DEFAULT_PORT}", _listen_check))
    threads = t.get("threads", int, 8, lambda v: None if 1 <= v <= 256 else "must be 1 to 256")
    processes = t.get("processes", int, 1, lambda v: None if 1 <= v <= 64 else "must be 1 to 64")
    proxy = t.get("trusted_proxy", str, "", _ip_address_check)
    t.finish()
    return ServerConfig(host, port, threads, processes, proxy or None)


def _ip_address_check(value: str) -> str | None:
    """One address, never a wildcard: believing anyone's X-Forwarded-For lets anyone pick theirs."""
    if not value:
        return None
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"not an IP address: {value!r} (the reverse proxy's own address, e.g. 127.0.0.1)"
    return None


def _paths(root: _Table, base: Path, defaults: PathsConfig) -> PathsConfig:
    t = root.table("paths")
    data_text = t.get("data", str, "")
    data = _resolve(base, data_text) if data_text else None

    def pick(key: str, default: Path, under_data: str) -> Path:
        text = t.get(key, str, "")
        if text:
            return _resolve(base, text)
        return data / under_data if data else default

    paths = PathsConfig(
        store=pick("store", defaults.store, "store"),
        index=pick("index", defaults.index, "index"),
        state=data or defaults.state,
        cache=pick("cache", defaults.cache, "cache"),
    )
    t.finish()
    return paths


def _index(root: _Table) -> IndexConfig:
    t = root.table("index")
    rescan = t.get("rescan_interval", float, 300.0, _positive)
    debounce = t.get("debounce", float, 0.2, lambda v: None if 0 <= v <= 10 else "must be 0 to 10")
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
    return IndexConfig(rescan, debounce, yanked)


def _upstream(root: _Table) -> UpstreamConfig:
    t = root.table("upstream")
    url = t.get("url", str, "", lambda v: check_http_url(v) if v else None)
    fallback = cast(Fallback, t.get("fallback", str, "redirect", _one_of(*FALLBACKS)))
    timeout = t.get("timeout", float, 10.0, _positive)
    ttl = t.get("cache_ttl", float, 600.0, lambda v: None if v >= 0 else "must be 0 or more")
    t.finish()
    if url:
        return UpstreamConfig(url.rstrip("/") + "/", "config", fallback, timeout, ttl)
    found = pipconf.configured_index_url()
    return UpstreamConfig(found.url, found.source, fallback, timeout, ttl)


def _upload(root: _Table, base: Path, conf_dir: Path) -> UploadConfig:
    t = root.table("upload")
    enabled = t.get("enabled", bool, False)
    users = t.get("users_file", str, "")
    max_mb = t.get("max_size_mb", int, 100, lambda v: None if v > 0 else "must be greater than 0")
    t.finish()
    users_file = _resolve(base, users) if users else conf_dir / "users"
    return UploadConfig(enabled, users_file, max_mb * 1024 * 1024)


def _fetch(root: _Table, base: Path, conf_dir: Path) -> FetchConfig:
    t = root.table("fetch")
    repos_dir = t.get("repos_dir", str, "")
    creds_dir = t.get("credentials_dir", str, "")
    fetch = FetchConfig(
        repos_dir=_resolve(base, repos_dir) if repos_dir else conf_dir / "repos.d",
        credentials_dir=_resolve(base, creds_dir) if creds_dir else conf_dir / "credentials",
        build_timeout=t.get("build_timeout", float, 1800.0, _positive),
        fetch_timeout=t.get("fetch_timeout", float, 300.0, _positive),
        publish=cast(PublishTarget, t.get("publish", str, "store", _one_of("store", "upload"))),
        upload_url=t.get("upload_url", str, "", lambda v: check_http_url(v) if v else None) or None,
        upload_username=t.get("upload_username", str, "__token__"),
        upload_credential=t.get("upload_credential", str, "") or None,
        backoff_max=t.get("backoff_max", float, 86400.0, _positive),
    )
    t.finish()
    if fetch.publish == "upload" and not fetch.upload_url:
        t.problem("publish", '"upload" needs fetch.upload_url')
    return fetch


_REPO_KEYS = {"url", "distribution", "subdirectory", "tag_pattern", "build", "min_version",
              "credential", "username"}


def _check_regex(value: str) -> str | None:
    try:
        re.compile(value)
    except re.error as error:
        return f"not a regular expression: {error}"
    return None


def _check_version(value: str) -> str | None:
    try:
        Version(value)
    except InvalidVersion:
        return f"not a PEP 440 version: {value!r}"
    return None


def _check_subdirectory(value: str) -> str | None:
    parts = Path(value).parts
    if Path(value).is_absolute() or ".." in parts:
        return f"must be a relative path inside the repository, got {value!r}"
    return None


def parse_repo(key: str, data: Mapping[str, Any], where: str, source: Path | None,
               problems: list[str]) -> RepoConfig | None:
    """One `[repos."KEY"]` table. Shared by the main file and the drop-ins in repos.d/."""
    t = _Table(data, where, problems, f"repos.{_quote_key(key)}.")
    before = len(problems)
    url = t.get("url", str, "")
    if not url:
        t.problem("url", "missing: every repository needs a git URL")
    distribution = t.get("distribution", str, "")
    pattern = t.get("tag_pattern", str, "", lambda v: _check_regex(v) if v else None)
    min_version = t.get("min_version", str, "", lambda v: _check_version(v) if v else None)
    repo = RepoConfig(
        key=key,
        url=url,
        source_file=source,
        distribution=canonicalize_name(distribution) if distribution else None,
        subdirectory=t.get("subdirectory", str, "", _check_subdirectory).strip("/"),
        tag_pattern=re.compile(pattern) if pattern else None,
        build=cast(BuildPolicy, t.get("build", str, "new", _one_of("new", "latest"))),
        min_version=Version(min_version) if min_version else None,
        credential=t.get("credential", str, "", _check_credential_name) or None,
        username=t.get("username", str, "") or None,
    )
    t.finish(_REPO_KEYS)
    return repo if len(problems) == before else None


def _check_credential_name(value: str) -> str | None:
    if (value and not re.fullmatch(r"[A-Za-z0-9_.@-]+", value)) or value in (".", ".."):
        return f"credential names are file names (letters, digits, _ . @ -), got {value!r}"
    return None


def _quote_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else f'"{key}"'


def _repos(root: _Table, fetch: FetchConfig) -> tuple[RepoConfig, ...]:
    found: dict[str, RepoConfig] = {}
    sources: list[tuple[str, Path | None, Mapping[str, Any]]] = [(root.where, None, root.table("repos").data)]
    for dropin in sorted(fetch.repos_dir.glob("*.toml")) if fetch.repos_dir.is_dir() else ():
        data = _read_toml(dropin, root.problems)
        if data is None:
            continue
        extra = set(data) - {"repos"}
        for key in sorted(extra):
            root.problems.append(f"{dropin}: {key}: unknown key (a drop-in holds only [repos.*] tables)")
        table = data.get("repos", {})
        sources.append((str(dropin), dropin, table if isinstance(table, dict) else {}))
    for where, source, table in sources:
        for key, value in table.items():
            if not isinstance(value, dict):
                root.problems.append(f"{where}: repos.{_quote_key(key)}: expected a table")
                continue
            if key in found:
                first = found[key].source_file or root.where
                root.problems.append(f"{where}: repos.{_quote_key(key)}: already defined in {first}")
                continue
            repo = parse_repo(key, value, where, source, root.problems)
            if repo:
                found[key] = repo
    return tuple(found.values())


def _read_toml(path: Path, problems: list[str]) -> dict[str, Any] | None:
    try:
        with path.open("rb") as stream:
            return tomllib.load(stream)
    except tomllib.TOMLDecodeError as error:
        problems.append(f"{path}: not valid TOML: {error}")
    except OSError as error:
        problems.append(f"{path}: cannot read: {error.strerror}")
    return None


# --------------------------------------------------------------------------- entry points


def load(explicit: str | None = None) -> Config:
    """Read the config file (or the embedded default when none exists) and validate all of it."""
    path, required = config_path(explicit)
    problems: list[str] = []
    data: dict[str, Any] = {}
    used: Path | None = None
    if path.exists() or required:
        if path.is_dir():
            msg = f"{path}: is a directory, not a config file"
            raise ConfigError(msg)
        loaded = _read_toml(path, problems)
        if loaded is None:
            raise ConfigError(problems)
        data, used = loaded, path
    return from_mapping(data, used, problems)


def from_mapping(data: Mapping[str, Any], path: Path | None, problems: list[str] | None = None) -> Config:
    problems = problems if problems is not None else []
    defaults, conf_dir = default_paths()
    if path is not None:
        conf_dir = path.parent
    base = conf_dir
    root = _Table(data, str(path) if path else "<embedded default>", problems, "")
    server = _server(root)
    paths = _paths(root, base, defaults)
    index = _index(root)
    upstream = _upstream(root)
    upload = _upload(root, base, conf_dir)
    fetch = _fetch(root, base, conf_dir)
    repos = _repos(root, fetch)
    root.finish({"server", "paths", "index", "yank", "upstream", "upload", "fetch", "repos"})
    if problems:
        raise ConfigError(problems)
    return Config(path, server, paths, index, upstream, upload, fetch, repos)


def with_overrides(config: Config, *, listen: str | None = None, store: str | None = None,
                   upstream: str | None = None, fallback: str | None = None) -> Config:
    """Command-line flags win over the file; they are validated like the file is."""
    problems: list[str] = []
    server, paths, up = config.server, config.paths, config.upstream
    if listen is not None:
        try:
            host, port = parse_listen(listen)
            server = replace(server, host=host, port=port)
        except ValueError as error:
            problems.append(f"--listen: {error}")
    if store is not None:
        paths = replace(paths, store=Path(store).expanduser().absolute())
    if upstream is not None:
        message = check_http_url(upstream)
        if message:
            problems.append(f"--upstream: {message}")
        else:
            up = replace(up, url=upstream.rstrip("/") + "/", url_source="--upstream")
    if fallback is not None:
        if message := _one_of(*FALLBACKS)(fallback):
            problems.append(f"--fallback: {message}")
        else:
            up = replace(up, fallback=cast(Fallback, fallback))
    if problems:
        raise ConfigError(problems)
    return replace(config, server=server, paths=paths, upstream=up)


def check_directories(config: Config, *, create: bool) -> None:
    """Make sure the data directories exist (or can be made) and are writable where they must be."""
    problems: list[str] = []
    for name, path in (("paths.store", config.paths.store), ("paths.index", config.paths.index),
                       ("paths.data", config.paths.state), ("paths.cache", config.paths.cache)):
        if create:
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                problems.append(f"{name}: cannot create {path}: {error.strerror}")
                continue
        if path.exists() and not path.is_dir():
            problems.append(f"{name}: {path} is not a directory")
        elif path.exists() and not os.access(path, os.W_OK | os.X_OK):
            problems.append(f"{name}: {path} is not writable by this user")
    if problems:
        raise ConfigError(problems)
