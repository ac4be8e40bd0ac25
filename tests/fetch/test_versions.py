"""Unit tier: which tags are versions, how Insiders schemes compare, which tags get built."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.version import Version

from pypi_insiders.config import RepoConfig
from pypi_insiders.fetch.versions import public_part, tag_versions, to_build, version_of_tag


@pytest.mark.parametrize(("tag", "expected"), [
    ("1.0.0", "1.0.0"),
    ("v1.2", "1.2"),
    ("V2.0rc1", "2.0rc1"),
    ("1.2.0.1.3.0", "1.2.0.1.3.0"),
    ("9.5.17-insiders-4.53.6", "9.5.17+insiders.4.53.6"),
    ("v9.5.17-insiders-4.53.6", "9.5.17+insiders.4.53.6"),
    ("1.0.0-insiders.1.2", "1.0.0+insiders.1.2"),
    ("2024.01.02", "2024.1.2"),
    ("latest", None),
    ("vnext", None),
    ("release-1.0", None),
    ("1.0-not a version", None),
    ("", None),
])
def test_version_of_tag_parses_versions_and_insiders_schemes(tag: str, expected: str | None) -> None:
    found = version_of_tag(tag)
    assert (str(found) if found else None) == expected


@pytest.mark.parametrize(("older", "newer"), [
    ("9.5.17", "9.5.17-insiders-4.53.6"),
    ("9.5.17-insiders-4.53.6", "9.5.17-insiders-4.53.10"),  # numeric, not string, comparison
    ("9.5.17-insiders-4.53.10", "9.5.18"),
    ("1.2.0.1.3.0", "1.2.0.1.10.0"),
    ("1.2.0.1.10.0", "1.3.0"),
    ("v1.9", "v1.10"),
])
def test_version_of_tag_orders_per_pep440(older: str, newer: str) -> None:
    old, new = version_of_tag(older), version_of_tag(newer)
    assert old is not None
    assert new is not None
    assert old < new


def _repo(**options: object) -> RepoConfig:
    return RepoConfig(key="demo", url="/nowhere", source_file=Path("x.toml"), **options)  # type: ignore[arg-type]


TAGS = {"v1.0": "a" * 40, "1.0": "b" * 40, "v1.10": "c" * 40, "v1.9": "d" * 40, "docs": "e" * 40,
        "2.0-insiders-1.0": "f" * 40}


def test_tag_versions_sorts_by_version_and_collapses_duplicates() -> None:
    found = tag_versions(TAGS, _repo())
    assert [(t.tag, str(t.version)) for t in found] == [
        ("1.0", "1.0"), ("v1.9", "1.9"), ("v1.10", "1.10"), ("2.0-insiders-1.0", "2.0+insiders.1.0")]
    assert found[0].commit == "b" * 40


def test_tag_versions_applies_pattern_and_minimum() -> None:
    found = tag_versions(TAGS, _repo(tag_pattern=re.compile(r"^v"), min_version=Version("1.5")))
    assert [t.tag for t in found] == ["v1.9", "v1.10"]


@pytest.mark.parametrize(("policy", "built", "expected"), [
    ("new", [], ["1.0", "1.9", "1.10"]),
    ("new", ["1.9"], ["1.0", "1.10"]),
    ("latest", [], ["1.10"]),
    ("latest", ["1.10"], []),
    ("latest", ["1.0"], ["1.10"]),
])
def test_to_build_follows_policy(policy: str, built: list[str], expected: list[str]) -> None:
    candidates = tag_versions({"1.0": "a" * 40, "1.9": "b" * 40, "1.10": "c" * 40}, _repo())
    chosen = to_build(candidates, {Version(v) for v in built}, policy)
    assert [str(c.version) for c in chosen] == expected


def test_public_part_strips_the_insiders_local_version() -> None:
    assert public_part(Version("9.5.17+insiders.4.53.6")) == Version("9.5.17")
    assert public_part(Version("1.2.0.1.3.0")) == Version("1.2.0.1.3.0")
