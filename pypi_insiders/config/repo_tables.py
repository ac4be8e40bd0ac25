"""`[repos."KEY"]` tables: from the main file and from the drop-ins of repos.d/, merged and checked."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from pypi_insiders.config.model import BUILD_POLICIES, BuildPolicy, FetchConfig, RepoConfig
from pypi_insiders.config.table import Table, one_of

_REPO_KEYS = {"url", "distribution", "subdirectory", "tag_pattern", "build", "min_version",
              "credential", "username", "webhook_secret"}


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
    t = Table(data, where, problems, f"repos.{_quote_key(key)}.")
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
        build=cast(BuildPolicy, t.get("build", str, RepoConfig.build, one_of(*BUILD_POLICIES))),
        min_version=Version(min_version) if min_version else None,
        credential=t.get("credential", str, "", _check_credential_name) or None,
        username=t.get("username", str, "") or None,
        webhook_secret=t.get("webhook_secret", str, "", _check_credential_name) or None,
    )
    t.finish(_REPO_KEYS)
    return repo if len(problems) == before else None


def _check_credential_name(value: str) -> str | None:
    if (value and not re.fullmatch(r"[A-Za-z0-9_.@-]+", value)) or value in (".", ".."):
        return f"credential names are file names (letters, digits, _ . @ -), got {value!r}"
    return None


def _quote_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else f'"{key}"'


def parse_repos(root: Table, fetch: FetchConfig) -> tuple[RepoConfig, ...]:
    found: dict[str, RepoConfig] = {}
    sources: list[tuple[str, Path | None, Mapping[str, Any]]] = [(root.where, None, root.table("repos").data)]
    for dropin in sorted(fetch.repos_dir.glob("*.toml")) if fetch.repos_dir.is_dir() else ():
        data = read_toml(dropin, root.problems)
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


def read_toml(path: Path, problems: list[str]) -> dict[str, Any] | None:
    try:
        with path.open("rb") as stream:
            return tomllib.load(stream)
    except tomllib.TOMLDecodeError as error:
        problems.append(f"{path}: not valid TOML: {error}")
    except UnicodeDecodeError as error:  # tomllib decodes the whole file as UTF-8 first
        problems.append(f"{path}: not valid TOML: not UTF-8 (byte {error.start})")
    except OSError as error:
        problems.append(f"{path}: cannot read: {error.strerror}")
    return None
