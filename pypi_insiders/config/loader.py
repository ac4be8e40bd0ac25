"""Reading the config in effect, and the command-line flags that win over it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from pypi_insiders import pipconf
from pypi_insiders.config import locations as defaults
from pypi_insiders.config import sections
from pypi_insiders.config.model import FALLBACKS, Config, Fallback, FetchConfig, RepoConfig, WebhooksConfig
from pypi_insiders.config.repo_tables import parse_repos, read_toml
from pypi_insiders.config.table import Table, check_http_url, one_of, parse_listen
from pypi_insiders.errors import ConfigError
from pypi_insiders.http_client import display_url

_SECTIONS = {"server", "paths", "index", "yank", "upstream", "upload", "fetch", "repos", "access",
             "webhooks"}


def load(explicit: str | None = None, *, reading: bool = False) -> Config:
    """Read the config file in effect (or the embedded default when none exists), all of it checked.

    `reading`: for a command that only reads (see `locations.choose_config`).
    """
    choice = defaults.choose_config(explicit, reading=reading)
    problems: list[str] = []
    data: dict[str, Any] = {}
    if choice.path is not None:
        if choice.path.is_dir():
            msg = f"{choice.path}: is a directory, not a config file"
            raise ConfigError(msg)
        loaded = read_toml(choice.path, problems)
        if loaded is None:
            raise ConfigError(problems)
        data = loaded
    return from_mapping(data, choice.path, problems, source=choice.source)


def from_mapping(data: Mapping[str, Any], path: Path | None, problems: list[str] | None = None,
                 *, source: str = "--config") -> Config:
    problems = problems if problems is not None else []
    locations = defaults.locations_for(path)
    sources = {"config": f"{path} ({source})" if path else source}
    root = Table(data, str(path) if path else "<embedded default>", problems, "")
    server = sections.server(root)
    paths = sections.paths(root, locations, sources)
    index = sections.index(root)
    upstream = sections.upstream(root, server)
    upload = sections.upload(root, locations, sources)
    fetch = sections.fetch(root, locations, sources)
    repos = parse_repos(root, fetch)
    access = sections.access(root, server)
    webhooks = sections.webhooks(root, locations, sources)
    root.finish(_SECTIONS)
    _check_secrets_dir(webhooks, fetch, problems, str(path or "<embedded default>"))
    if problems:
        raise ConfigError(problems)
    return Config(path=path, server=server, paths=paths, index=index, upstream=upstream, upload=upload,
                  fetch=fetch, repos=repos, sources=sources, access=access, webhooks=webhooks)


def _check_secrets_dir(webhooks: WebhooksConfig, fetch: FetchConfig, problems: list[str], where: str) -> None:
    """The index must never be handed the git credentials: a shared directory is refused."""
    if webhooks.secrets_dir.absolute() == fetch.credentials_dir.absolute():
        problems.append(f"{where}: webhooks.secrets_dir: must not be fetch.credentials_dir "
                        f"({fetch.credentials_dir}): the index would read every git credential")


def current_repos(config: Config) -> tuple[RepoConfig, ...]:
    """The watched repositories as the files say now: `repos add` and `remove` change them on
    disk, and a running index reports them (/status) without a reload. Raises ConfigError.
    """
    problems: list[str] = []
    data = read_toml(config.path, problems) if config.path is not None else {}
    if data is None:
        raise ConfigError(problems)
    root = Table(data, str(config.path or "<embedded default>"), problems, "")
    repos = parse_repos(root, config.fetch)
    if problems:
        raise ConfigError(problems)
    return repos


def with_overrides(config: Config, *, listen: str | None = None, store: str | None = None,
                   upstream: str | None = None, fallback: str | None = None) -> Config:
    """Command-line flags win over the file; they are validated like the file is."""
    problems: list[str] = []
    server, up = config.server, config.upstream
    if listen is not None:
        try:
            host, port = parse_listen(listen)
            server = replace(server, host=host, port=port)
        except ValueError as error:
            problems.append(f"--listen: {error}")
    if listen is not None and up.url_source not in ("config", "--upstream"):
        found = pipconf.configured_index_url(listen=(server.host, server.port))
        up = replace(up, url=found.url, url_source=found.source, skipped=found.skipped)
    if upstream is not None:
        message = check_http_url(upstream) or (
            f"{display_url(upstream)} is this index itself" if pipconf.is_own_index(
                upstream, (server.host, server.port)) else None)
        if message:
            problems.append(f"--upstream: {message}")
        else:
            up = replace(up, url=upstream.rstrip("/") + "/", url_source="--upstream", skipped=())
    if fallback is not None:
        if message := one_of(*FALLBACKS)(fallback):
            problems.append(f"--fallback: {message}")
        else:
            up = replace(up, fallback=cast(Fallback, fallback))
    if problems:
        raise ConfigError(problems)
    access = config.access
    if access.reason.startswith("default:"):  # --listen decides the default as the file would
        anonymous, reason = sections.default_anonymous(server)
        access = replace(access, anonymous=anonymous, reason=reason)
    config = replace(config, server=server, upstream=up, access=access)
    return with_store(config, Path(store)) if store is not None else config


def with_store(config: Config, store: Path) -> Config:
    """A store of its own comes with state of its own: pins, index and caches under a directory
    named after the store, so two instances on two stores never serve each other's pages.
    Directories set one by one in the config ([paths] index, cache) are kept as they are.
    """
    store = store.expanduser().absolute()
    if store == config.paths.store:
        return config
    name = defaults.instance_name(store)
    state = config.paths.state / "stores" / name
    sources = dict(config.sources, store="--store", data=f"derived from --store ({name})")
    index, cache = state / "index", config.paths.cache / "stores" / name
    if config.sources.get("index") == "paths.index":
        index = config.paths.index
    else:
        sources["index"] = sources["data"]
    if config.sources.get("cache") == "paths.cache":
        cache = config.paths.cache
    else:
        sources["cache"] = sources["data"]
    paths = replace(config.paths, store=store, state=state, index=index, cache=cache)
    return replace(config, paths=paths, sources=sources)
