"""The package's layers, read from its own imports: the folders are the data flow.

fetch -> index -> web never runs backwards: the web never imports the fetch stage (it gets
what it shows through protocols the service fills), the index imports neither the web nor
the fetch stage, and only `sd` talks to systemd's Python modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pypi_insiders"
FORBIDDEN = {"web": ("pypi_insiders.fetch",), "index": ("pypi_insiders.web", "pypi_insiders.fetch"),
             "fetch": ("pypi_insiders.web", "pypi_insiders.mirror"),
             "mirror": ("pypi_insiders.web", "pypi_insiders.fetch")}


def _imports(path: Path) -> set[str]:
    """Every module a file imports, resolved to absolute names (relative imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                parts = path.relative_to(PACKAGE.parent).with_suffix("").parts[: -node.level]
                module = ".".join((*parts, module) if module else parts)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_layers_every_stage_folder_exists() -> None:
    for stage in ("fetch", "index", "web"):
        assert (PACKAGE / stage / "__init__.py").is_file()


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_layers_a_stage_never_imports_a_later_or_unrelated_one(path: Path) -> None:
    stage = path.relative_to(PACKAGE).parts[0]
    for forbidden in FORBIDDEN.get(stage, ()):
        wrong = sorted(name for name in _imports(path) if _within(name, forbidden))
        assert not wrong, f"{path.relative_to(PACKAGE)} imports {wrong}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_layers_only_sd_imports_systemd(path: Path) -> None:
    if path == PACKAGE / "sd.py":
        return
    wrong = sorted(name for name in _imports(path) if _within(name, "systemd"))
    assert not wrong, f"{path.relative_to(PACKAGE)} imports {wrong}"


def test_layers_the_walk_sees_real_imports() -> None:
    """The check above would pass on nothing: prove it reads the imports it polices."""
    assert "pypi_insiders.fetch.status" in _imports(PACKAGE / "service" / "status_refresh.py")
    assert "systemd.daemon" in _imports(PACKAGE / "sd.py") or "systemd" in _imports(PACKAGE / "sd.py")
