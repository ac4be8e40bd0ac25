"""The state and cache directories' layout: one owner, and nobody else joins names onto them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pypi_insiders.state_layout import CacheLayout, StateLayout, slug

PACKAGE = Path(__file__).resolve().parent.parent / "pypi_insiders"
OWNERS = {PACKAGE / "state_layout.py", PACKAGE / "config" / "loader.py"}  # loader: `stores/<instance>`
ROOTS = {"paths.state", "paths.cache", "state_dir", "cache_dir"}  # config.paths.state, a parameter


def _paths(layout: StateLayout | CacheLayout) -> list[Path]:
    names = [name for name, value in vars(type(layout)).items() if isinstance(value, property)]
    return [getattr(layout, name) for name in names]


@pytest.mark.parametrize("layout", [StateLayout(Path("/s")), CacheLayout(Path("/c"))], ids=["state", "cache"])
def test_state_layout_every_path_is_distinct_and_inside_its_directory(
        layout: StateLayout | CacheLayout) -> None:
    paths = _paths(layout)
    assert len(paths) >= 7
    assert len(set(paths)) == len(paths)
    assert all(path.parent == layout.root for path in paths)


def test_state_layout_repository_files_are_named_by_slug() -> None:
    assert StateLayout(Path("/s")).repo_state("a/b") == Path("/s/repos") / f"{slug('a/b')}.json"
    assert CacheLayout(Path("/c")).mirror("a/b") == Path("/c/mirrors") / f"{slug('a/b')}.git"
    assert slug("a/b") != slug("a-b")


def _joins_onto_a_root(source: str) -> list[str]:
    """`<root> / "name"` where the root is a state or cache directory: a path built by hand."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            left = ast.unparse(node.left)
            if any(left == root or left.endswith(f".{root}") for root in ROOTS):
                found.append(ast.unparse(node))
    return found


def test_state_layout_the_check_finds_paths_built_by_hand() -> None:
    """The test below would pass on nothing: prove it sees the spellings it polices."""
    source = 'a = config.paths.state / "x"\nb = cache_dir / NAME\nc = state / "y"\nd = paths.cache / "z"'
    assert _joins_onto_a_root(source) == ["config.paths.state / 'x'", "cache_dir / NAME", "paths.cache / 'z'"]


@pytest.mark.parametrize("path", sorted(set(PACKAGE.rglob("*.py")) - OWNERS),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_state_layout_no_module_builds_its_own_state_path(path: Path) -> None:
    assert _joins_onto_a_root(path.read_text(encoding="utf-8")) == [], f"use state_layout in {path.name}"
