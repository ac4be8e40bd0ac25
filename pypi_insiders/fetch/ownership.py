"""Which repository may publish a distribution name: one name per repository, one owner per name.

A repository publishes exactly one distribution: the configured one, or the one learnt at its
first build (kept in its state file and enforced by the builder from then on). A name is refused
when another repository owns it (configured, or learnt at that repository's first build), or
when the store holds files of it that no build of this repository put there (uploads, files
added by hand, another repository's builds): otherwise any watched repository could place a
newer release on a page that belongs to someone else, or make a public name local for good.
"""

from __future__ import annotations

from collections.abc import Collection

from packaging.utils import NormalizedName, canonicalize_name

from pypi_insiders.config import Config
from pypi_insiders.errors import BuildError
from pypi_insiders.fetch import repo_state
from pypi_insiders.provenance import Provenance
from pypi_insiders.store import Store


class OwnershipError(BuildError):
    """A build names a distribution this repository may not publish."""


def owner_of(config: Config, repo_key: str, name: NormalizedName, built: Collection[str] = ()) -> str | None:
    """Who owns `name` when it is not `repo_key`: "repository KEY" or "uploads"; None when free or ours."""
    for other in config.repos:
        if other.key != repo_key and other.distribution == name:
            return f"repository {other.key}"
    for other in config.repos:
        if other.key == repo_key or other.distribution is not None:
            continue
        learnt = repo_state.load(config, other.key).distribution
        if learnt and canonicalize_name(learnt) == name:
            return f"repository {other.key}"
    if config.fetch.publish == "store":
        return _store_owner(config, repo_key, name, built)
    return None


def _store_owner(config: Config, repo_key: str, name: NormalizedName, built: Collection[str]) -> str | None:
    """The first file of the project in the store that this repository did not build, if any.

    `built`: versions this repository's state says it built (files published before provenance
    was recorded count as its own).
    """
    distributions = Store(config.paths.store).distributions_of(name)
    provenance = Provenance(config.paths.state)
    for filename, parsed in sorted(distributions.items()):
        origin = provenance.of(filename)
        if origin is None and str(parsed.version) in built:
            continue
        if origin is None:
            return "uploads (or files added by hand)"
        if origin.repo != repo_key:
            return f"repository {origin.repo}"
    return None


def check(config: Config, repo_key: str, tag: str, name: NormalizedName, *, own: NormalizedName | None,
          built: Collection[str] = ()) -> None:
    """Refuse a build of `name` that another owner holds (one line naming both names)."""
    owner = owner_of(config, repo_key, name, built)
    if owner is None:
        return
    ours = f"; this repository publishes {own!r}" if own and own != name else ""
    msg = (f"repository {repo_key} tag {tag}: builds {name!r}, a name owned by {owner}{ours}; "
           "nothing published")
    raise OwnershipError(msg)
