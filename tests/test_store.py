"""The store: filename parsing, atomic no-overwrite publishing, and paths that stay inside."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest
from packaging.version import Version

from pypi_insiders.errors import InvalidDistributionError, StoreError
from pypi_insiders.files import atomic_write
from pypi_insiders.store import Store, is_hidden, parse_filename
from tests.support.distfiles import make_wheel


@pytest.mark.parametrize(
    ("filename", "project", "version", "kind"),
    [
        ("foo-1.0-py3-none-any.whl", "foo", "1.0", "wheel"),
        ("Foo_Bar-2.0.post1-py3-none-any.whl", "foo-bar", "2.0.post1", "wheel"),
        ("foo.bar-1.0.tar.gz", "foo-bar", "1.0", "sdist"),
        ("mkdocs_material-9.5.17+insiders.4.53.6.tar.gz", "mkdocs-material", "9.5.17+insiders.4.53.6",
         "sdist"),
        ("pkg-1.2.0.1.3.0.zip", "pkg", "1.2.0.1.3.0", "sdist"),
    ],
)
def test_store_parse_filename_accepts_distributions(filename: str, project: str, version: str,
                                                    kind: str) -> None:
    parsed = parse_filename(filename)
    assert (parsed.project, parsed.version, parsed.kind) == (project, Version(version), kind)


@pytest.mark.parametrize(
    "filename",
    ["", "..", "../foo-1.0.tar.gz", "a/foo-1.0.tar.gz", "a\\foo-1.0.tar.gz", "foo-1.0.tar.gz\0",
     "foo-1.0.exe", "foo.whl", "foo-notaversion.tar.gz", "foo-1.0-py3-none.whl", "README"],
)
def test_store_parse_filename_rejects_everything_else(filename: str) -> None:
    with pytest.raises(InvalidDistributionError):
        parse_filename(filename)


@pytest.mark.parametrize("name", [".foo-1.0.tar.gz.abc.part", "x.tmp", "file~", ".hidden"])
def test_store_hidden_names_are_never_distributions(name: str) -> None:
    assert is_hidden(name)


def test_store_add_publishes_under_the_project_and_accepts_identical_bytes(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "src", "Foo_Bar", "1.0")
    store = Store(tmp_path / "store")
    published = store.add(wheel.name, wheel)
    assert published == tmp_path / "store" / "foo-bar" / wheel.name
    assert published.read_bytes() == wheel.read_bytes()
    assert store.add(wheel.name, io.BytesIO(wheel.read_bytes())) == published
    assert store.contains(wheel.name)
    assert [p.name for p in published.parent.iterdir()] == [wheel.name]  # no temp file left


def test_store_add_never_overwrites_other_bytes(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "src", "foo", "1.0")
    store = Store(tmp_path / "store")
    published = store.add(wheel.name, wheel)
    before = published.read_bytes()
    with pytest.raises(StoreError, match="already exists with different content"):
        store.add(wheel.name, io.BytesIO(b"other bytes"))
    assert published.read_bytes() == before
    assert [p.name for p in published.parent.iterdir()] == [wheel.name]


def test_store_walk_lists_visible_files_with_their_stat(tmp_path: Path) -> None:
    store = Store(tmp_path)
    make_wheel(tmp_path / "a", "a", "1.0")
    (tmp_path / "a" / ".a-2.0-py3-none-any.whl.x.part").write_bytes(b"partial")
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "deep" / "er" / "b-1.0.tar.gz").write_bytes(b"12345")
    entries = {e.relpath: e.size for e in store.walk()}
    assert entries.keys() == {"a/a-1.0-py3-none-any.whl", "deep/er/b-1.0.tar.gz"}
    assert entries["deep/er/b-1.0.tar.gz"] == 5


@pytest.mark.parametrize("relpath", ["", "/etc/passwd", "../x", "a/../../x", "a//b", "./a"])
def test_store_path_of_refuses_escapes(tmp_path: Path, relpath: str) -> None:
    with pytest.raises(StoreError):
        Store(tmp_path).path_of(relpath)


def test_store_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "page.html"
    atomic_write(target, b"old")
    atomic_write(target, b"new", durable=False)
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]


def test_store_atomic_write_gives_the_mode_asked_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        atomic_write(tmp_path / "page.html", b"page", durable=False)
        atomic_write(tmp_path / "users", b"secret", mode=0o640)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "page.html").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "users").stat().st_mode) == 0o640


def test_store_atomic_write_leaves_nothing_when_the_directory_is_gone(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "missing" / "page.html", b"page")
    assert list(tmp_path.iterdir()) == []
