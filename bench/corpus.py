"""A benchmark corpus: N projects x 10 real, small, installable files, made once and cached.

Usage: `.venv/bin/python -m bench.corpus DIR --projects 2000`. DIR gets `store/` (the
distributions) and `corpus.json` (the project names, written last, so a corpus cut short by a
crash is made again rather than measured half-built). Names are deliberately unnormalized in a
fifth of the projects each (`Bench_Proj_00005`, `bench.proj.00006`, `BenchProj-00007`) and the
directories use the raw names, so every index under test has to normalize what it finds.

`flat/` holds hard links to the same files in one directory, for pypiserver: its cache
watches one inotify instance per directory holding a hashed file, so on the per-project
layout it runs out of inotify instances (128 by default) after 128 projects and answers 500.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from tests.support.distfiles import make_sdist, make_wheel

VERSIONS = ("1.0.0", "1.1.0", "1.2.0", "2.0.0", "2.1.0")  # x (wheel + sdist) = 10 files
MANIFEST = "corpus.json"
_CHUNK = 250


@dataclass(frozen=True)
class Corpus:
    """A finished corpus on disk; `names` are the raw (possibly unnormalized) project names."""

    root: Path
    names: tuple[str, ...]

    @property
    def store(self) -> Path:
        return self.root / "store"

    @property
    def flat(self) -> Path:
        return self.root / "flat"

    @property
    def normalized(self) -> list[str]:
        return [canonicalize_name(name) for name in self.names]

    @property
    def files(self) -> int:
        return len(self.names) * len(VERSIONS) * 2


def project_name(index: int) -> str:
    """Every style of spelling pip users type: underscores, dots, capitals, plain."""
    style = index % 5
    if style == 0:
        return f"Bench_Proj_{index:05d}"
    if style == 1:
        return f"bench.proj.{index:05d}"
    if style == 2:
        return f"BenchProj-{index:05d}"
    return f"bench-proj-{index:05d}"


def _make_project(store: Path, name: str) -> None:
    directory = store / name
    for version in VERSIONS:
        make_wheel(directory, name, version, requires_python=">=3.8")
        sdist = make_sdist(directory, name, version, requires_python=">=3.8")
        if "-" not in name:
            # Legacy tools kept the name as typed in the sdist filename; keep some of that.
            sdist.rename(directory / f"{name}-{version}.tar.gz")


def _default_signals() -> None:
    """Pool workers must not inherit bench.run's SIGTERM handler: with it, `Pool.terminate()` at
    the end of the `with` block could leave a worker alive and the run waiting for it forever."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C and terminates the pool


def _make_chunk(args: tuple[str, list[str]]) -> int:
    store, names = Path(args[0]), args[1]
    for name in names:
        _make_project(store, name)
    return len(names)


def make_flat(corpus: Corpus) -> None:
    """Hard links to every store file in one directory (made once; a link costs no space)."""
    if corpus.flat.is_dir():
        return
    partial = corpus.root / "flat.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    for project in corpus.store.iterdir():
        for path in project.iterdir():
            if not path.name.startswith("."):
                os.link(path, partial / path.name)
    partial.rename(corpus.flat)


def load(root: Path) -> Corpus | None:
    """The corpus at `root` if it was finished, else None."""
    try:
        data = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not (root / "store").is_dir():
        return None
    return Corpus(root, tuple(data["names"]))


def make(root: Path, projects: int, *, workers: int | None = None) -> Corpus:
    """Make (or reuse) a corpus of `projects` projects; a cached one of the same size is reused."""
    existing = load(root)
    if existing is not None and len(existing.names) == projects:
        make_flat(existing)
        return existing
    if root.exists():
        shutil.rmtree(root)
    partial = root / "store.partial"
    partial.mkdir(parents=True)
    names = [project_name(i) for i in range(projects)]
    chunks = [(str(partial), names[i:i + _CHUNK]) for i in range(0, len(names), _CHUNK)]
    with multiprocessing.Pool(workers or os.cpu_count() or 1, initializer=_default_signals) as pool:
        for _ in pool.imap_unordered(_make_chunk, chunks):
            pass
    partial.rename(root / "store")
    corpus = Corpus(root, tuple(names))
    make_flat(corpus)
    (root / MANIFEST).write_text(json.dumps({"projects": projects, "names": names}))
    return corpus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--projects", type=int, default=2000)
    args = parser.parse_args(argv)
    started = time.monotonic()
    corpus = make(args.directory, args.projects)
    print(f"{corpus.root}: {len(corpus.names)} projects, {corpus.files} files "
          f"({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
