"""`pypi-insiders repos add|list|remove`: one drop-in file per repository in `fetch.repos_dir`.

The command never rewrites config.toml: an administrator's hand-written tables (and comments)
stay untouched, and each added repository is one `<repos_dir>/<slug>.toml` holding a single
`[repos."KEY"]` table, which `remove` deletes. Both kinds are read by `config.load`, and a key
defined twice is a config error, so the two ways cannot silently disagree.
"""

from __future__ import annotations

import errno
import json
import os
import pwd
import re
import stat
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from packaging.utils import canonicalize_name

from pypi_insiders import config as config_module
from pypi_insiders.config import Config, RepoConfig
from pypi_insiders.errors import ConfigError, UsageError
from pypi_insiders.files import atomic_write
from pypi_insiders.http_client import display_url
from pypi_insiders.privileges import SERVICE_USER
from pypi_insiders.state_layout import slug

SHORTHAND_HOST = "https://github.com"  # the original's NAMESPACE/PROJECT meant a GitHub repository
SHORTHAND_SSH = "git@github.com"  # ... fetched with the user's own SSH keys, as the original did
_NAME = r"[A-Za-z0-9_.-]+"
_SHORTHAND = re.compile(rf"(?P<namespace>{_NAME})/(?P<project>{_NAME})(?::(?P<dist>{_NAME}))?")
_SCP_LIKE = re.compile(r"(?:[^@/:]+@)?[^@/:]+:[^/].*|(?:[^@/:]+@)?[^@/:]+:/.+")
_URL_SCHEMES = ("https", "http", "ssh", "git+ssh", "file")


def parse_source(source: str) -> tuple[str, str, str | None]:
    """(key, git URL, distribution from `:DIST`) for every accepted SOURCE spelling."""
    if "://" in source:
        scheme = source.split("://", 1)[0]
        if scheme not in _URL_SCHEMES:
            msg = f"{source}: unsupported URL scheme {scheme!r} (use {', '.join(_URL_SCHEMES)})"
            raise UsageError(msg)
        try:
            return _key_from_path(urlsplit(source).path), source, None
        except ValueError as error:
            msg = f"{display_url(source)}: not a usable URL ({error})"
            raise UsageError(msg) from None
    if source.startswith(("/", "./", "../", "~")) or Path(source).exists():
        path = Path(source).expanduser().absolute()
        return path.name.removesuffix(".git"), str(path), None
    shorthand = _SHORTHAND.fullmatch(source)
    if shorthand:
        key = f"{shorthand['namespace']}/{shorthand['project']}"
        return key, f"{SHORTHAND_HOST}/{key}.git", shorthand["dist"]
    if _SCP_LIKE.fullmatch(source):
        return _key_from_path(source.split(":", 1)[1]), source, None
    msg = f"{source}: not NAMESPACE/PROJECT[:DISTRIBUTION], a git URL or a local path"
    raise UsageError(msg)


def _has_credentials(source: str) -> bool:
    """Whether a URL carries a secret: any user part, but an SSH login name alone is none."""
    try:
        parts = urlsplit(source)
    except ValueError:  # not one urllib can take apart: anything before an "@" may be a secret
        return display_url(source) != source
    if parts.scheme.lower() in ("ssh", "git+ssh", "ssh+git"):
        return parts.password is not None
    return parts.username is not None


def refuse_credentials(source: str, credentials_dir: Path) -> None:
    """A token in the URL (`https://TOKEN@host/`, or as a password) would be written in clear to
    the drop-in and shown wherever the URL is; the credential file keeps it out of both."""
    if _has_credentials(source):
        msg = (f"{display_url(source)}: a credential in the URL would be stored in clear; put the "
               f"token in a file in {credentials_dir} and name it with --credential NAME")
        raise UsageError(msg)


def check_local(url: str) -> None:
    """A local repository is checked at once: a typo found at the next timer run is found late."""
    if url.startswith("file://"):
        url = urlsplit(url).path
    if not url.startswith("/"):
        return
    path = Path(url)
    if not path.is_dir():
        msg = f"{url}: no such directory"
        raise UsageError(msg)
    if not ((path / ".git").exists() or (path / "HEAD").is_file()):
        msg = f"{url}: not a git repository (no .git, and not a bare repository)"
        raise UsageError(msg)


# The fetch unit's ProtectHome=yes: these are empty for the service, whatever their modes.
HIDDEN_FROM_SERVICE = (Path("/home"), Path("/root"), Path("/run/user"))


def check_service_can_read(config: Config, url: str) -> None:
    """With the system layout, the timer's runs read a local repository as the service user."""
    if url.startswith("file://"):
        url = urlsplit(url).path
    if not url.startswith("/"):
        return
    try:
        service = pwd.getpwnam(SERVICE_USER)
        if config.paths.state.stat().st_uid != service.pw_uid or os.geteuid() == service.pw_uid:
            return
    except (KeyError, OSError):
        return  # no service layout here: the user who adds it is the one who fetches it
    groups = set(os.getgrouplist(service.pw_name, service.pw_gid))
    why = service_cannot_read(Path(url), service.pw_uid, groups)
    if why:
        msg = f"{url}: the fetch service (user {SERVICE_USER}) cannot read it: {why}"
        raise UsageError(msg)


def service_cannot_read(path: Path, uid: int, gids: set[int]) -> str | None:
    """Why `uid` cannot read the repository at `path` (None when it can): modes along the path."""
    if any(path == h or h in path.parents for h in HIDDEN_FROM_SERVICE):
        return "home directories are hidden from the service (ProtectHome=yes); put it under /srv or /var"
    for directory in [*reversed(path.parents), path]:
        needed = 0o5 if directory == path else 0o1  # search along the way, read and search at the end
        info = directory.stat()
        shift = 6 if info.st_uid == uid else 3 if info.st_gid in gids else 0
        if (info.st_mode >> shift) & needed != needed:
            what = "read" if needed == 0o5 else "enter"
            return f"it may not {what} {directory} (mode {stat.filemode(info.st_mode)})"
    return None


def _key_from_path(path: str) -> str:
    """`team/project` from the last two path components: readable, and unique in practice."""
    parts = [p.removesuffix(".git") for p in path.strip("/").split("/") if p]
    if not parts:
        msg = f"{path!r}: the URL has no repository path"
        raise UsageError(msg)
    return "/".join(parts[-2:])


def entry(url: str, distribution: str | None, options: dict[str, str | None]) -> dict[str, str]:
    table = {"url": url}
    if distribution:
        table["distribution"] = distribution
    table.update({k: v for k, v in options.items() if v})
    return table


def cli_add(config: Config, source: str, distribution: str | None, *, subdirectory: str | None = None,
            tag_pattern: str | None = None, build: str | None = None, min_version: str | None = None,
            credential: str | None = None, username: str | None = None) -> int:
    refuse_credentials(source, config.fetch.credentials_dir)
    key, url, dist_from_source = parse_source(source)
    if credential is None and url == f"{SHORTHAND_HOST}/{key}.git" != source and _per_user(config):
        url = f"{SHORTHAND_SSH}:{key}.git"
    check_local(url)
    check_service_can_read(config, url)
    if distribution and dist_from_source and (
            canonicalize_name(distribution) != canonicalize_name(dist_from_source)):
        msg = (
            f"{source}: names distribution {dist_from_source!r}, "
                         f"the argument says {distribution!r}"
        )
        raise UsageError(msg)
    existing = config.repo(key)
    if existing is not None:
        where = existing.source_file or config.path or "the configuration"
        msg = f"repository {key!r} already exists in {where}"
        raise UsageError(msg)
    table = entry(url, distribution or dist_from_source,
                  {"subdirectory": subdirectory, "tag_pattern": tag_pattern, "build": build,
                   "min_version": min_version, "credential": credential, "username": username})
    path = dropin_path(config.fetch.repos_dir, key)
    problems: list[str] = []
    if config_module.parse_repo(key, table, str(path), path, problems) is None:
        raise ConfigError(problems)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, render_dropin(key, table).encode())
    except OSError as error:
        raise UsageError(_cannot("write", path, error)) from None
    print(f"added {key} ({display_url(url)}) in {path}")
    return 0


def _per_user(config: Config) -> bool:
    """NAMESPACE/PROJECT without a credential: SSH with the user's keys for a per-user config,
    HTTPS for the system one (the service user has no keys; public repositories need none)."""
    return config_module.locations_for(config.path).name != "system"


def _cannot(what: str, path: Path, error: OSError) -> str:
    as_root = error.errno == errno.EACCES and os.geteuid() != 0 and path.is_relative_to("/etc")
    hint = " (the drop-ins in /etc are root's: use sudo)" if as_root else ""
    return f"fetch.repos_dir: cannot {what} {path}: {error.strerror or error}{hint}"


def dropin_path(directory: Path, key: str) -> Path:
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", key).strip(".-") or "repo"
    path = directory / f"{readable}.toml"
    return directory / f"{slug(key)}.toml" if path.exists() else path


def _toml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def render_dropin(key: str, table: dict[str, str]) -> str:
    lines = ["# Written by `pypi-insiders repos add`; `pypi-insiders repos remove` deletes this file.",
             f"[repos.{_toml_string(key)}]"]
    lines += [f"{name} = {_toml_string(value)}" for name, value in table.items()]
    return "\n".join(lines) + "\n"


def cli_remove(config: Config, key: str) -> int:
    repo = config.repo(key)
    if repo is None:
        msg = f"unknown repository {key!r} (see `pypi-insiders repos list`)"
        raise UsageError(msg)
    if repo.source_file is None:
        msg = f"repository {key!r} is defined in {config.path}; edit that file to remove it"
        raise UsageError(msg)
    others = [r.key for r in config.repos if r.source_file == repo.source_file and r.key != key]
    if others:
        msg = f"{repo.source_file} also defines {others[0]!r}; edit that file to remove {key!r}"
        raise UsageError(msg)
    try:
        repo.source_file.unlink()
    except OSError as error:
        raise UsageError(_cannot("remove", repo.source_file, error)) from None
    print(f"removed {key} ({repo.source_file}); its built files stay in the store")
    return 0


def describe(repo: RepoConfig, config: Config) -> dict[str, Any]:
    return {"key": repo.key, "url": display_url(repo.url), "distribution": repo.distribution,
            "subdirectory": repo.subdirectory or None,
            "tag_pattern": repo.tag_pattern.pattern if repo.tag_pattern else None,
            "build": repo.build, "min_version": str(repo.min_version) if repo.min_version else None,
            "credential": repo.credential,
            "defined_in": str(repo.source_file or config.path or "<embedded default>")}


def cli_list(config: Config, *, as_json: bool = False) -> int:
    rows = [describe(repo, config) for repo in config.repos]
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no repositories watched (add one with `pypi-insiders repos add`; drop-ins in "
              f"{config.fetch.repos_dir})")
        return 0
    for row in rows:
        extras = [f"{name}={row[name]}" for name in ("distribution", "subdirectory", "tag_pattern",
                                                     "min_version", "credential") if row[name]]
        print(f"{row['key']}  {row['url']}  build={row['build']}  {' '.join(extras)}".rstrip())
    return 0
