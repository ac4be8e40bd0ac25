"""The wheel carries every module: built from a copy of the source, installed into a fresh venv.

The fast tier runs from the source tree, so a subpackage the wheel (and so the .deb) left out
would pass every other test. This one imports, from the installed wheel only, each module the
source tree has.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pypi_insiders"

pytestmark = pytest.mark.slow


def _source_modules() -> set[str]:
    names = set()
    for path in PACKAGE.rglob("*.py"):
        if path.name == "__main__.py":  # importing it runs the CLI; the wheel listing checks it
            continue
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _run(argv: list[str], cwd: Path) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
    return done.stdout


def test_packaging_the_wheel_installs_and_imports_every_module(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(PACKAGE, source / "pypi_insiders", ignore=shutil.ignore_patterns("__pycache__"))
    # Debian's setuptools, no isolation: the build needs no package registry.
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-w", str(tmp_path / "dist"), str(source)], tmp_path)
    wheel = next((tmp_path / "dist").glob("pypi_insiders-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        assert {"pypi_insiders/py.typed", "pypi_insiders/__main__.py"} <= set(archive.namelist())

    venv = tmp_path / "venv"
    _run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)], tmp_path)
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
         tmp_path)
    expected = _source_modules()
    script = ("import importlib, json, sys\n"
              "names = json.loads(sys.argv[1])\n"
              "for name in names:\n"
              "    module = importlib.import_module(name)\n"
              "    assert '/site-packages/' in module.__file__, module.__file__\n"
              "print(len(names))\n")
    out = _run([str(venv / "bin" / "python"), "-I", "-c", script, json.dumps(sorted(expected))], tmp_path)
    assert int(out) == len(expected) > 40
    assert (venv / "bin" / "pypi-insiders").exists()
