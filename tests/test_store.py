"""The store: filename parsing, atomic no-overwrite publishing, the filename registry, what it holds,
and paths that stay inside."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

from pypi_insiders import config
from pypi_insiders.errors import FilenameReusedError, InvalidDistributionError, StoreError
from pypi_insiders.files import atomic_write
from pypi_insiders.state_layout import StateLayout
from pypi_insiders.store import Store, is_hidden, parse_filename
from tests.support.distfiles import make_wheel


def _tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


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


@pytest.mark.parametrize("filename", ["../foo-1.0.tar.gz", "foo-1.0.exe", ".foo-1.0.tar.gz.x.part"])
def test_store_add_refuses_a_name_that_is_no_distribution_even_with_a_project(tmp_path: Path,
                                                                              filename: str) -> None:
    registry = tmp_path / "state" / "published-filenames.txt"
    store = Store(tmp_path / "store", registry)
    with pytest.raises(InvalidDistributionError):
        store.add(filename, io.BytesIO(b"bytes"), project=canonicalize_name("foo"))
    assert _tree(tmp_path) == []  # nothing placed, nothing recorded


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


def test_store_add_never_reuses_a_filename_whose_file_is_gone(tmp_path: Path) -> None:
    """Deleted by hand, by `remove`, or lost: the name is refused, with other bytes and the same."""
    wheel = make_wheel(tmp_path / "src", "foo", "1.0")
    store = Store(tmp_path / "store", tmp_path / "state" / "published-filenames.txt")
    store.add(wheel.name, wheel).unlink()
    for source in (wheel, io.BytesIO(b"other bytes")):
        with pytest.raises(FilenameReusedError, match="cannot be reused"):
            store.add(wheel.name, source)
    assert _tree(tmp_path / "store") == []
    assert store.was_published(wheel.name)


def test_store_add_records_the_name_and_accepts_identical_bytes_again(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "src", "foo", "1.0")
    registry = tmp_path / "state" / "published-filenames.txt"
    store = Store(tmp_path / "store", registry)
    assert store.add(wheel.name, wheel) == store.add(wheel.name, wheel)
    assert registry.read_text().splitlines() == [wheel.name]
    with pytest.raises(StoreError, match="already exists with different content") as caught:
        store.add(wheel.name, io.BytesIO(b"other bytes"))
    assert not isinstance(caught.value, FilenameReusedError)


def test_store_registry_starts_from_the_files_dropped_in_by_hand(tmp_path: Path) -> None:
    by_hand = make_wheel(tmp_path / "store" / "anywhere", "foo", "1.0")
    registry = tmp_path / "state" / "published-filenames.txt"
    store = Store(tmp_path / "store", registry)
    assert store.was_published(by_hand.name)
    assert not store.was_published("foo-2.0-py3-none-any.whl")
    by_hand.unlink()
    with pytest.raises(FilenameReusedError):
        store.add(by_hand.name, io.BytesIO(b"wheel"))
    assert registry.read_text().splitlines() == [by_hand.name]


def test_store_registry_sees_names_another_process_recorded(tmp_path: Path) -> None:
    registry = tmp_path / "state" / "published-filenames.txt"
    reader, writer = Store(tmp_path / "store", registry), Store(tmp_path / "store", registry)
    assert not reader.was_published("foo-1.0.tar.gz")
    writer.remember(["foo-1.0.tar.gz"])
    assert reader.was_published("foo-1.0.tar.gz")


def test_store_without_a_registry_records_nothing(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "src", "foo", "1.0")
    store = Store(tmp_path / "store")
    store.add(wheel.name, wheel).unlink()
    store.remember([wheel.name])
    assert not store.was_published(wheel.name)
    assert store.add(wheel.name, wheel).exists()


def test_store_for_config_keeps_the_registry_in_the_state_directory(tmp_path: Path) -> None:
    loaded = config.from_mapping({"paths": {"data": str(tmp_path / "data")}}, None)
    store = Store.for_config(loaded)
    assert store.root == loaded.paths.store
    assert store.registry is not None
    assert store.registry.path == StateLayout(loaded.paths.state).published_filenames


def test_store_answers_what_it_holds(tmp_path: Path) -> None:
    store = Store(tmp_path)
    wheel = make_wheel(tmp_path / "foo-bar", "Foo_Bar", "1.0")
    make_wheel(tmp_path / "foo-bar", "foo-bar", "2.0")
    make_wheel(tmp_path / "elsewhere", "foo-bar", "3.0")  # by hand, outside the project directory
    (tmp_path / "foo-bar" / "foo_bar-4.0.tar.gz").write_bytes(b"sdist")
    (tmp_path / "foo-bar" / "other-5.0-py3-none-any.whl").write_bytes(b"another project's")
    (tmp_path / "foo-bar" / ".foo_bar-6.0-py3-none-any.whl.x.part").write_bytes(b"partial")
    (tmp_path / "foo-bar" / "README").write_text("not a distribution")
    assert store.contains(wheel.name)
    assert store.contains(wheel.name, project=canonicalize_name("foo-bar"))
    assert not store.contains("foo_bar-3.0-py3-none-any.whl")  # not where `add` would put it
    assert not store.contains("not a distribution")
    assert sorted(store.files_of(canonicalize_name("foo-bar"))) == [
        "README", wheel.name, "foo_bar-2.0-py3-none-any.whl", "foo_bar-4.0.tar.gz",
        "other-5.0-py3-none-any.whl"]
    assert store.files_of(canonicalize_name("missing")) == []
    assert {name: (str(p.version), p.kind) for name, p in
            store.distributions_of(canonicalize_name("foo-bar")).items()} == {
        wheel.name: ("1.0", "wheel"), "foo_bar-2.0-py3-none-any.whl": ("2.0", "wheel"),
        "foo_bar-4.0.tar.gz": ("4.0", "sdist")}  # no README, no other project's, no partial file
    assert store.distributions_of(canonicalize_name("missing")) == {}
    assert store.versions(canonicalize_name("foo-bar"), "wheel") == {Version("1.0"), Version("2.0")}
    assert store.versions(canonicalize_name("foo-bar"), "sdist") == {Version("4.0")}
    by_hand = "foo_bar-3.0-py3-none-any.whl"
    assert store.copies(by_hand) == [tmp_path / "elsewhere" / by_hand]


def test_store_remove_deletes_every_copy_and_records_the_name_first(tmp_path: Path) -> None:
    registry = tmp_path / "state" / "published-filenames.txt"
    store = Store(tmp_path / "store", registry)
    wheel = make_wheel(tmp_path / "src", "foo", "1.0")
    store.add(wheel.name, wheel)
    make_wheel(tmp_path / "store" / "by-hand", "foo", "1.0")
    assert sorted(store.remove(wheel.name)) == [tmp_path / "store" / "by-hand" / wheel.name,
                                                tmp_path / "store" / "foo" / wheel.name]
    assert _tree(tmp_path / "store") == []
    assert store.was_published(wheel.name)
    assert store.remove("foo-2.0.tar.gz") == []
    assert not store.was_published("foo-2.0.tar.gz")  # nothing was there: nothing is recorded


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
