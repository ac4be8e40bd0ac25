"""Scopes: which projects a user may read, or upload to.

`*` covers every project, also ones that appear later; otherwise a set of normalized names,
which need not exist yet (a sponsor's token may be made before the first build lands).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from packaging.utils import NormalizedName, canonicalize_name

from pypi_insiders.project_names import is_valid


@dataclass(frozen=True)
class Scope:
    """`*` (every project, also ones that appear later) or a set of normalized names."""

    everything: bool = False
    names: frozenset[NormalizedName] = frozenset()

    def covers(self, project: str) -> bool:
        return self.everything or project in self.names

    def __str__(self) -> str:
        return "*" if self.everything else ",".join(sorted(self.names))

    def __bool__(self) -> bool:
        return self.everything or bool(self.names)


EVERYTHING: Final = Scope(everything=True)
NOTHING: Final = Scope()


def parse_scope(text: str) -> Scope:
    """`*`, `a,b` or empty; ValueError naming the bad part. A name need not exist yet."""
    text = text.strip()
    if text == "*":
        return EVERYTHING
    if not text:
        return NOTHING
    names = []
    for part in text.split(","):
        name = part.strip()
        if not is_valid(name):
            msg = f"not a project name: {name!r} (a scope is '*' or comma-separated project names)"
            raise ValueError(msg)
        names.append(canonicalize_name(name))
    return Scope(names=frozenset(names))
