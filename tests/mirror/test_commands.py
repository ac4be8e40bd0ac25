"""`pypi-insiders mirror prefetch|verify|sweep|purge` against a stand-in upstream on loopback."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pypi_insiders.cli import main
from pypi_insiders.files import exclusive_lock
from pypi_insiders.index.pins import write_pins
from pypi_insiders.mirror.layout import MirrorLayout
from pypi_insiders.state_layout import StateLayout
from tests.conftest import ConfigMaker
from tests.support.mirror_upstream import Upstream
from tests.support.server_fixtures import ThreadedServer


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, str]]:
    fake = Upstream()
    with ThreadedServer(fake.app) as server:
        yield fake, server.url


@pytest.fixture
def mirror_config(make_config: ConfigMaker, upstream: tuple[Upstream, str]) -> Path:
    return make_config(upstream={"url": upstream[1] + "simple/", "fallback": "mirror", "min_free": 0,
                                 "max_size": 10_000})


def kept(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "cache" / "mirror" / "files").rglob("*.whl"))


def test_mirror_prefetch_keeps_exactly_the_hash_pinned_files(
        mirror_config: Path, upstream: tuple[Upstream, str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake, _ = upstream
    linux = fake.add("far", "far-1.0-cp311-cp311-manylinux_2_17_x86_64.whl", b"linux")
    fake.add("far", "far-1.0-cp311-cp311-win_amd64.whl", b"windows")
    fake.add("far", "far-2.0-py3-none-any.whl", b"newer")
    fake.add("near", "near-3.0-py3-none-any.whl", b"near")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"# pinned\nfar==1.0 \\\n    --hash=sha256:{linux}\nnear==3.0\n")
    assert main(["--config", str(mirror_config), "mirror", "prefetch", "-r", str(requirements)]) == 0
    assert kept(tmp_path) == ["far-1.0-cp311-cp311-manylinux_2_17_x86_64.whl", "near-3.0-py3-none-any.whl"]
    assert (tmp_path / "cache" / "mirror" / "kept" / linux).exists()
    assert "kept far-1.0-cp311-cp311-manylinux_2_17_x86_64.whl" in capsys.readouterr().out


@pytest.mark.parametrize(("line", "message"), [
    ("far>=1.0", "is not pinned: write NAME==VERSION"),
    ("-r other.txt", "-r is not supported here"),
    ("far @ https://x/far.whl", "is not pinned"),
    ("far==", "not a requirement"),
])
def test_mirror_prefetch_refuses_what_is_not_a_pin(  # noqa: PLR0917 - fixtures and parameters
        mirror_config: Path, upstream: tuple[Upstream, str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str], line: str, message: str) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"near==1\n{line}\n")
    assert main(["--config", str(mirror_config), "mirror", "prefetch", "-r", str(requirements)]) == 2
    err = capsys.readouterr().err
    assert f"{requirements}:2: " in err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert upstream[0].requests == []


def test_mirror_prefetch_never_asks_upstream_for_a_local_name(
        mirror_config: Path, upstream: tuple[Upstream, str], tmp_path: Path, data_dir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    upstream[0].add("ours", "ours-1.0-py3-none-any.whl", b"impostor")
    write_pins(StateLayout(data_dir).pinned_projects, ["ours"])
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("ours==1.0\n")
    assert main(["--config", str(mirror_config), "mirror", "prefetch", "-r", str(requirements)]) == 1
    assert "refused ours: a local name never goes upstream" in capsys.readouterr().out
    assert upstream[0].requests == []


def test_mirror_verify_sweep_and_purge(
        mirror_config: Path, upstream: tuple[Upstream, str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake, _ = upstream
    far = fake.add("far", "far-1.0-py3-none-any.whl", b"a" * 6000)
    fake.add("near", "near-1.0-py3-none-any.whl", b"b" * 6000)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("far==1.0\nnear==1.0\n")
    assert main(["--config", str(mirror_config), "mirror", "prefetch", "-r", str(requirements)]) == 0
    # Both are kept from eviction although together they exceed max_size.
    assert main(["--config", str(mirror_config), "mirror", "sweep"]) == 0
    assert kept(tmp_path) == ["far-1.0-py3-none-any.whl", "near-1.0-py3-none-any.whl"]
    [stored] = (tmp_path / "cache" / "mirror" / "files").rglob("near-1.0-py3-none-any.whl")
    stored.write_bytes(b"c" * 6000)
    capsys.readouterr()
    assert main(["--config", str(mirror_config), "mirror", "verify"]) == 1
    assert "deleted near-1.0-py3-none-any.whl" in capsys.readouterr().out
    assert kept(tmp_path) == ["far-1.0-py3-none-any.whl"]
    assert main(["--config", str(mirror_config), "mirror", "purge", "FAR"]) == 0
    assert kept(tmp_path) == ["far-1.0-py3-none-any.whl"]  # prefetched: kept
    (tmp_path / "cache" / "mirror" / "kept" / far).unlink()
    assert main(["--config", str(mirror_config), "mirror", "purge", "FAR"]) == 0
    assert kept(tmp_path) == []
    assert not (tmp_path / "cache" / "mirror" / "pages" / "far.json").exists()


@pytest.mark.parametrize("keep_removed", [False, True])
def test_mirror_sweep_drops_files_no_page_lists_any_more_unless_keep_removed(
        make_config: ConfigMaker, upstream: tuple[Upstream, str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str], keep_removed: bool) -> None:
    fake, _ = upstream
    mirror_config = make_config(upstream={"url": upstream[1] + "simple/", "fallback": "mirror",
                                          "min_free": 0, "keep_removed": keep_removed})
    fake.add("far", "far-1.0-py3-none-any.whl", b"stays")
    fake.add("far", "far-2.0-py3-none-any.whl", b"removed upstream")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("far==1.0\nfar==2.0\n")
    assert main(["--config", str(mirror_config), "mirror", "prefetch", "-r", str(requirements)]) == 0
    for mark in (tmp_path / "cache" / "mirror" / "kept").iterdir():
        mark.unlink()  # no longer prefetched
    page = tmp_path / "cache" / "mirror" / "pages" / "far.json"
    stored = json.loads(page.read_text())
    stored["files"] = [f for f in stored["files"] if f["filename"] == "far-1.0-py3-none-any.whl"]
    page.write_text(json.dumps(stored))  # as a refresh after upstream deleted 2.0 writes it
    capsys.readouterr()
    assert main(["--config", str(mirror_config), "mirror", "sweep"]) == 0
    if keep_removed:
        assert "swept: 0 files, 0 bytes freed" in capsys.readouterr().out
        assert kept(tmp_path) == ["far-1.0-py3-none-any.whl", "far-2.0-py3-none-any.whl"]
    else:
        assert "(0 evicted past max_size, 1 no page lists any more)" in capsys.readouterr().out
        assert kept(tmp_path) == ["far-1.0-py3-none-any.whl"]


def test_mirror_sweep_drops_a_project_upstream_deleted_but_not_files_of_a_page_dropped_for_a_new_url(
        make_config: ConfigMaker, upstream: tuple[Upstream, str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake, _ = upstream
    fake.add("far", "far-1.0-py3-none-any.whl", b"far")
    fake.add("near", "near-1.0-py3-none-any.whl", b"near")
    config_file = make_config(upstream={"url": upstream[1] + "simple/", "fallback": "mirror",
                                        "min_free": 0, "cache_ttl": 0})
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("far==1.0\nnear==1.0\n")
    assert main(["--config", str(config_file), "mirror", "prefetch", "-r", str(requirements)]) == 0
    for mark in (tmp_path / "cache" / "mirror" / "kept").iterdir():
        mark.unlink()  # no longer prefetched
    (tmp_path / "cache" / "mirror" / "pages" / "near.json").unlink()  # as a new upstream.url does
    del fake.projects["far"]  # upstream deleted the project: its page answers 404 now
    requirements.write_text("far==1.0\n")
    assert main(["--config", str(config_file), "mirror", "prefetch", "-r", str(requirements)]) == 1
    assert not (tmp_path / "cache" / "mirror" / "pages" / "far.json").exists()
    capsys.readouterr()
    assert main(["--config", str(config_file), "mirror", "sweep"]) == 0
    assert "(0 evicted past max_size, 1 no page lists any more)" in capsys.readouterr().out
    assert kept(tmp_path) == ["near-1.0-py3-none-any.whl"]
    assert not list((tmp_path / "cache" / "mirror" / "gone").iterdir())


def test_mirror_sweep_removes_old_free_lock_files_and_says_so_in_one_line(
        mirror_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    layout = MirrorLayout.under(tmp_path / "cache")
    layout.ensure()
    old, held, recent = (layout.lock(str(n) * 64) for n in range(3))
    for lock in (old, held, recent):
        lock.touch()
    for lock in (old, held):
        os.utime(lock, (time.time() - 2 * 86400,) * 2)
    with exclusive_lock(held):
        assert main(["--config", str(mirror_config), "mirror", "sweep"]) == 0
    assert (old.exists(), held.exists(), recent.exists()) == (False, True, True)
    out, err = capsys.readouterr()
    assert "1 old lock files removed" in out
    assert len([line for line in err.splitlines() if "mirror sweep:" in line]) == 1  # the journal's line
    assert main(["--config", str(mirror_config), "mirror", "sweep"]) == 0
    assert not held.exists()  # free now
    capsys.readouterr()
    assert main(["--config", str(mirror_config), "mirror", "sweep"]) == 0
    assert "mirror sweep:" not in capsys.readouterr().err  # nothing freed: nothing said
    assert recent.exists()


def test_mirror_prefetch_refuses_a_file_larger_than_max_file_size(
        make_config: ConfigMaker, upstream: tuple[Upstream, str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake, _ = upstream
    fake.add("far", "far-1.0-py3-none-any.whl", b"x" * 2000)
    config_file = make_config(upstream={"url": upstream[1] + "simple/", "fallback": "mirror", "min_free": 0,
                                        "max_file_size": 1000})
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("far==1.0\n")
    assert main(["--config", str(config_file), "mirror", "prefetch", "-r", str(requirements)]) == 1
    assert ("refused far-1.0-py3-none-any.whl: 2000 bytes, more than upstream.max_file_size "
            "(1000 bytes)") in capsys.readouterr().out
    assert fake.count("/files/") == 0
    assert kept(tmp_path) == []
    assert not list((tmp_path / "cache" / "mirror" / "kept").iterdir())


def test_mirror_prefetch_host_only_keeps_sdists_and_wheels_this_machine_installs(
        mirror_config: Path, upstream: tuple[Upstream, str], tmp_path: Path) -> None:
    fake, _ = upstream
    fake.add("far", "far-1.0-py3-none-any.whl", b"any")
    fake.add("far", "far-1.0-cp27-cp27m-win32.whl", b"elsewhere")
    fake.add("far", "far-1.0.tar.gz", b"sdist")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("far==1.0\n")
    assert main(["--config", str(mirror_config), "mirror", "prefetch", "--host-only",
                 "-r", str(requirements)]) == 0
    stored = sorted(p.name for p in (tmp_path / "cache" / "mirror" / "files").rglob("far-*"))
    assert stored == ["far-1.0-py3-none-any.whl", "far-1.0.tar.gz"]
