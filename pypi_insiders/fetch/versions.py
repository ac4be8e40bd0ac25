"""Which tags are versions, which of those to build: PEP 440 decides, never string comparison.

The original compared versions by string replacement and built only the latest tag. Here a tag
is a version when, without an optional leading `v`, it parses per PEP 440 (`1.2.0.1.3.0`, the
mkdocstrings Insiders scheme, already does) or follows the `BASE-insiders-INSIDERS` scheme,
which becomes the local version `BASE+insiders.INSIDERS`: it sorts right after the public
BASE release it extends and compares correctly between Insiders releases.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from packaging.version import InvalidVersion, Version

from pypi_insiders.config import RepoConfig

_INSIDERS = re.compile(r"(?P<base>[0-9][0-9A-Za-z.]*?)[-_.+]insiders[-_.](?P<insiders>[0-9][0-9.]*)",
                       re.IGNORECASE)


@dataclass(frozen=True)
class TagVersion:
    """A tag that names a version, the commit it points to, and the version the build must carry."""

    tag: str
    commit: str
    version: Version


def version_of_tag(tag: str) -> Version | None:
    """The PEP 440 version a tag stands for, or None when the tag is not a version."""
    text = tag[1:] if tag[:1] in ("v", "V") and tag[1:2].isdigit() else tag
    if not text[:1].isdigit():
        return None
    insiders = _INSIDERS.fullmatch(text)
    if insiders:
        text = f"{insiders['base']}+insiders.{insiders['insiders'].strip('.')}"
    try:
        return Version(text)
    except InvalidVersion:
        return None


def tag_versions(tags: Mapping[str, str], repo: RepoConfig) -> list[TagVersion]:
    """Version tags that pass the repository's pattern and minimum, oldest first, one per version.

    Two tags naming the same version (`v1.0` and `1.0`) collapse to the first by name, so the
    same version is never built twice from different commits.
    """
    found: dict[Version, TagVersion] = {}
    for tag in sorted(tags):
        if repo.tag_pattern is not None and not repo.tag_pattern.search(tag):
            continue
        version = version_of_tag(tag)
        if version is None or (repo.min_version is not None and version < repo.min_version):
            continue
        found.setdefault(version, TagVersion(tag, tags[tag], version))
    return [found[v] for v in sorted(found)]


def to_build(candidates: list[TagVersion], built: Iterable[Version], policy: str) -> list[TagVersion]:
    """The tags to build now: every unbuilt version ("new") or the newest if unbuilt ("latest")."""
    done = set(built)
    if policy == "latest":
        candidates = candidates[-1:]
    return [c for c in candidates if c.version not in done]


def public_part(version: Version) -> Version:
    """What an Insiders version extends: `9.5.17+insiders.4.53.6` -> `9.5.17`."""
    return Version(version.public)
