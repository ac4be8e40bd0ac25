"""The generated index against PEP 503/592/629/658/691/700/714, from real files in a real store."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pypi_insiders import config
from pypi_insiders.index import work_pool
from pypi_insiders.index.generate import Generator
from pypi_insiders.state_layout import CacheLayout
from tests.conftest import ConfigMaker
from tests.support.distfiles import make_sdist, make_wheel

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")
PEP691_FILE_KEYS = {"filename", "url", "hashes", "requires-python", "core-metadata", "dist-info-metadata",
                    "yanked", "size", "upload-time"}


class Anchors(HTMLParser):
    """Every <a> of a page with its attributes, and the PEP 629 meta tag if present."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[dict[str, str | None], str]] = []
        self.meta: dict[str, str | None] = {}
        self._open: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._open = dict(attrs)
        elif tag == "meta":
            found = dict(attrs)
            if found.get("name"):
                self.meta[str(found["name"])] = found.get("content")

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self.links.append((self._open, data))
            self._open = None


def parse_html(path: Path) -> Anchors:
    parser = Anchors()
    parser.feed(path.read_text())
    parser.close()
    return parser


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(root: Path) -> dict[Path, bytes]:
    return {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def cfg(loaded_config: config.Config) -> config.Config:
    return loaded_config


@pytest.fixture
def generator(cfg: config.Config) -> Iterator[Generator]:
    made = Generator.from_config(cfg)
    yield made
    made.close()


def project_json(cfg: config.Config, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((cfg.paths.index / "simple" / name / "index.json").read_bytes())
    return data


def root_names(cfg: config.Config) -> list[str]:
    data = json.loads((cfg.paths.index / "simple" / "index.json").read_bytes())
    return [p["name"] for p in data["projects"]]


def test_generator_json_pages_follow_pep691_and_pep700(cfg: config.Config, generator: Generator) -> None:
    store = cfg.paths.store
    old = make_wheel(store / "alpha", "alpha", "1.0", requires_python=">=3.8")
    new = make_wheel(store / "alpha", "alpha", "1.10", requires_python=">=3.9,<4")
    sdist = make_sdist(store / "alpha", "alpha", "1.2", requires_python=">=3.9")
    generator.generate_all()

    root = json.loads((cfg.paths.index / "simple" / "index.json").read_bytes())
    assert root == {"meta": {"api-version": "1.1"}, "projects": [{"name": "alpha"}]}
    page = project_json(cfg, "alpha")
    assert page["meta"] == {"api-version": "1.1"}
    assert page["name"] == "alpha"
    assert page["versions"] == ["1.0", "1.2", "1.10"]
    by_name = {f["filename"]: f for f in page["files"]}
    assert [f["filename"] for f in page["files"]] == [old.name, sdist.name, new.name]
    for path, requires in ((old, ">=3.8"), (new, ">=3.9,<4"), (sdist, ">=3.9")):
        entry = by_name[path.name]
        assert set(entry) <= PEP691_FILE_KEYS
        assert entry["url"] == f"../../packages/alpha/{path.name}#sha256={sha256(path)}"
        assert entry["hashes"] == {"sha256": sha256(path)}
        assert entry["requires-python"] == requires
        assert entry["size"] == path.stat().st_size
        assert ISO_Z.match(entry["upload-time"])
        assert entry["yanked"] is False
    assert "core-metadata" not in by_name[sdist.name]


def test_generator_metadata_files_match_their_hashes(cfg: config.Config, generator: Generator) -> None:
    wheel = make_wheel(cfg.paths.store / "beta", "beta", "2.0", requires=["alpha>=1"])
    generator.generate_all()
    entry = project_json(cfg, "beta")["files"][0]
    metadata_file = cfg.paths.index / "packages" / "beta" / f"{wheel.name}.metadata"
    with zipfile.ZipFile(wheel) as archive:
        inside = archive.read("beta-2.0.dist-info/METADATA")
    assert metadata_file.read_bytes() == inside
    assert entry["core-metadata"] == {"sha256": sha256(metadata_file)}
    # PEP 714's old name stays in HTML only: pip 22.3 to 23.1 crash on it as a JSON object.
    assert "dist-info-metadata" not in entry
    assert not list((cfg.paths.index / "packages").rglob("*.tar.gz.metadata"))


def test_generator_html_pages_follow_pep503_629_and_714(cfg: config.Config, generator: Generator) -> None:
    wheel = make_wheel(cfg.paths.store / "gamma", "gamma", "1.0", requires_python=">=3.8")
    sdist = make_sdist(cfg.paths.store / "gamma", "gamma", "1.0")
    generator.generate_all()

    root = parse_html(cfg.paths.index / "simple" / "index.html")
    assert root.meta == {"pypi:repository-version": "1.1"}
    assert [(a["href"], text) for a, text in root.links] == [("gamma/", "gamma")]
    page_file = cfg.paths.index / "simple" / "gamma" / "index.html"
    assert 'data-requires-python="&gt;=3.8"' in page_file.read_text()
    page = parse_html(page_file)
    assert page.meta == {"pypi:repository-version": "1.1"}
    links = {text: attrs for attrs, text in page.links}
    assert set(links) == {wheel.name, sdist.name}
    metadata_hash = sha256(cfg.paths.index / "packages" / "gamma" / f"{wheel.name}.metadata")
    assert links[wheel.name] == {
        "href": f"../../packages/gamma/{wheel.name}#sha256={sha256(wheel)}",
        "data-requires-python": ">=3.8",
        "data-core-metadata": f"sha256={metadata_hash}",
        "data-dist-info-metadata": f"sha256={metadata_hash}",
    }
    assert links[sdist.name] == {"href": f"../../packages/gamma/{sdist.name}#sha256={sha256(sdist)}"}
    home = (cfg.paths.index / "index.html").read_text()
    assert "2 files of 1 project" in home


def test_generator_yanks_versions_from_the_config(make_config: ConfigMaker) -> None:
    cfg = config.load(str(make_config(yank={"Delta": {"1.0": "broken build", "1.1": ""}})))
    for version in ("1.0", "1.1", "1.2"):
        make_wheel(cfg.paths.store / "delta", "delta", version)
    generator = Generator.from_config(cfg)
    generator.generate_all()
    yanked = {f["filename"]: f["yanked"] for f in project_json(cfg, "delta")["files"]}
    assert list(yanked.values()) == ["broken build", True, False]
    links = {text: attrs for attrs, text in parse_html(cfg.paths.index / "simple/delta/index.html").links}
    assert [attrs.get("data-yanked", "absent") for attrs in links.values()] == ["broken build", "", "absent"]

    before = generator.stats.projects_regenerated
    generator.reconfigure(config.load(str(make_config(yank={"delta": {"1.2": "oops"}}))))
    assert generator.stats.projects_regenerated == before + 1
    yanked = {f["filename"]: f["yanked"] for f in project_json(cfg, "delta")["files"]}
    assert list(yanked.values()) == [False, False, "oops"]
    generator.close()


def test_generator_leaves_no_wal_behind_a_full_run(cfg: config.Config, generator: Generator) -> None:
    for number in range(30):
        make_wheel(cfg.paths.store / f"walled-{number}", f"walled-{number}", "1.0")
    generator.generate_all()
    db = CacheLayout(cfg.paths.cache).metadata_db
    wal = db.with_name(f"{db.name}-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    assert len(project_json(cfg, "walled-29")["files"]) == 1


def _sdist_with_filler_first(directory: Path, name: str, version: str, filler: int) -> Path:
    """An sdist whose PKG-INFO comes after `filler` incompressible bytes (build tools put it first)."""
    base = f"{name}-{version}"
    path = directory / f"{base}.tar.gz"
    directory.mkdir(parents=True, exist_ok=True)
    members = {f"{base}/data.bin": os.urandom(filler),
               f"{base}/PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                   "Requires-Python: >=3.9\n".encode()}
    with tarfile.open(path, "w:gz") as archive:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


# PKG-INFO within the head kept while hashing (1 MiB), its header in it but its bytes just past, past it
@pytest.mark.parametrize("filler", [10, 1024 * 1024 - 1024, 3 * 1024 * 1024])
def test_generator_reads_an_sdists_metadata_wherever_it_lies(
        cfg: config.Config, generator: Generator, filler: int) -> None:
    sdist = _sdist_with_filler_first(cfg.paths.store / "late", "late", "1.0", filler)
    generator.generate_all()
    [served] = project_json(cfg, "late")["files"]
    assert (served["filename"], served["requires-python"]) == (sdist.name, ">=3.9")


def test_generator_skips_broken_files_with_one_warning(
        cfg: config.Config, generator: Generator, caplog: pytest.LogCaptureFixture) -> None:
    store = cfg.paths.store
    good = make_wheel(store / "eps", "eps", "1.0")
    (store / "eps" / "eps-2.0-py3-none-any.whl").write_bytes(b"PK\x03\x04 not really a zip")
    truncated = make_sdist(store / "eps", "eps", "3.0")
    truncated.write_bytes(truncated.read_bytes()[:-40])
    (store / "eps" / "eps-notaversion!.tar.gz").write_bytes(b"x")
    make_wheel(store / "eps", "eps", "4.0", metadata_name="other")
    caplog.set_level(logging.WARNING, logger="pypi_insiders")
    generator.generate_all()

    assert [f["filename"] for f in project_json(cfg, "eps")["files"]] == [good.name]
    warned = sorted(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert len(warned) == 4
    for fragment in ("eps-2.0-py3-none-any.whl", "eps-3.0.tar.gz: truncated", "eps-notaversion!.tar.gz",
                     "eps-4.0-py3-none-any.whl: its metadata names project 'other'"):
        assert any(fragment in message for message in warned), fragment
    caplog.clear()
    generator.generate_all()
    Generator.from_config(cfg).generate_all()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_generator_serves_unnormalized_filenames_under_the_normalized_name(
        cfg: config.Config, generator: Generator) -> None:
    sdist = make_sdist(cfg.paths.store / "incoming", "Foo_Bar", "1.0")
    odd = sdist.rename(sdist.with_name("Foo_Bar-1.0.tar.gz"))
    wheel = make_wheel(cfg.paths.store, "Foo.Bar", "1.1", filename="Foo.Bar-1.1-py3-none-any.whl")
    generator.generate_all()
    assert root_names(cfg) == ["foo-bar"]
    urls = [f["url"] for f in project_json(cfg, "foo-bar")["files"]]
    assert urls == [f"../../packages/incoming/{odd.name}#sha256={sha256(odd)}",
                    f"../../packages/{wheel.name}#sha256={sha256(wheel)}"]


def test_generator_pins_names_and_keeps_them_when_files_vanish(
        cfg: config.Config, generator: Generator) -> None:
    one = make_wheel(cfg.paths.store / "zeta", "zeta", "1.0")
    make_wheel(cfg.paths.store / "eta", "eta", "1.0")
    generator.generate_all()
    pins = cfg.paths.state / "pinned-projects.txt"
    assert pins.read_text() == "eta\nzeta\n"
    one.unlink()
    generator.update_paths(["zeta/" + one.name])
    assert not (cfg.paths.index / "simple" / "zeta").exists()
    assert not (cfg.paths.index / "packages" / "zeta" / f"{one.name}.metadata").exists()
    assert root_names(cfg) == ["eta"]
    assert pins.read_text() == "eta\nzeta\n"
    generator.generate_all()
    assert pins.read_text() == "eta\nzeta\n"


def test_generator_reuses_cached_hashes_without_reading_files(
        cfg: config.Config, generator: Generator) -> None:
    wheel = make_wheel(cfg.paths.store / "theta", "theta", "1.0")
    generator.generate_all()
    original = sha256(wheel)
    stat = wheel.stat()
    data = bytearray(wheel.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes: only a read of the file could notice
    wheel.write_bytes(bytes(data))
    os.utime(wheel, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    fresh = Generator.from_config(cfg)
    shutil.rmtree(cfg.paths.index / "simple" / "theta")
    fresh.generate_all()
    assert fresh.stats.files_read == 0
    assert project_json(cfg, "theta")["files"][0]["hashes"]["sha256"] == original

    os.utime(wheel, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    fresh.generate_all()
    assert fresh.stats.files_read == 1
    assert project_json(cfg, "theta")["files"][0]["hashes"]["sha256"] == sha256(wheel) != original
    fresh.close()


def test_generator_rebuilds_deleted_index_and_cache_identically(
        cfg: config.Config, generator: Generator) -> None:
    make_wheel(cfg.paths.store / "iota", "iota", "1.0")
    make_sdist(cfg.paths.store / "iota", "iota", "1.1")
    generator.generate_all()
    before = tree(cfg.paths.index)
    generator.close()
    shutil.rmtree(cfg.paths.index)
    shutil.rmtree(cfg.paths.cache)
    again = Generator.from_config(cfg)
    again.generate_all()
    assert tree(cfg.paths.index) == before
    shutil.rmtree(cfg.paths.index / "packages")
    again.generate_all()
    assert (cfg.paths.index / "packages" / "iota" / "iota-1.0-py3-none-any.whl.metadata").exists()
    again.close()


def test_generator_rebuilds_every_metadata_file_though_a_change_came_with_the_deletion(
        cfg: config.Config, generator: Generator) -> None:
    """The metadata files are gone and one file changed: the run that reads the changed one
    recreates `packages/`, and must still rebuild the unchanged ones' files."""
    make_wheel(cfg.paths.store / "iota", "iota", "1.0")
    make_wheel(cfg.paths.store / "kappa", "kappa", "1.0")
    generator.generate_all()
    shutil.rmtree(cfg.paths.index / "packages")
    make_wheel(cfg.paths.store / "kappa", "kappa", "1.1")
    generator.generate_all()
    for relpath in ("iota/iota-1.0-py3-none-any.whl", "kappa/kappa-1.0-py3-none-any.whl",
                    "kappa/kappa-1.1-py3-none-any.whl"):
        assert (cfg.paths.index / "packages" / f"{relpath}.metadata").exists(), relpath


def test_generator_rebuilds_a_big_deleted_index_in_the_pool_without_reading_again(
        cfg: config.Config, generator: Generator) -> None:
    """Enough projects for the pool: the metadata files and pages come back byte for byte,
    from the cache's facts (no file is read again to hash it)."""
    count = work_pool.POOL_FROM + 10
    for number in range(count):
        make_wheel(cfg.paths.store / f"bulk-{number}", f"bulk-{number}", "1.0")
    generator.generate_all()
    before = tree(cfg.paths.index)
    shutil.rmtree(cfg.paths.index)
    read = generator.stats.files_read
    generator.generate_all()
    assert generator.stats.files_read == read
    assert tree(cfg.paths.index) == before


def test_generator_warm_run_regenerates_nothing(cfg: config.Config, generator: Generator) -> None:
    for index in range(5):
        make_sdist(cfg.paths.store / f"p{index}", f"p{index}", "1.0")
    generator.generate_all()
    page = cfg.paths.index / "simple" / "p0" / "index.html"
    mtime = page.stat().st_mtime_ns
    assert (generator.stats.projects_regenerated, generator.stats.root_writes) == (5, 1)
    generator.generate_all()
    assert (generator.stats.projects_regenerated, generator.stats.root_writes) == (5, 1)
    assert page.stat().st_mtime_ns == mtime


def test_generator_root_is_rewritten_only_when_the_project_set_changes(
        cfg: config.Config, generator: Generator) -> None:
    make_wheel(cfg.paths.store / "kappa", "kappa", "1.0")
    generator.generate_all()
    added = make_wheel(cfg.paths.store / "kappa", "kappa", "1.1")
    generator.update_paths(["kappa/" + added.name])
    assert generator.stats.root_writes == 1
    assert len(project_json(cfg, "kappa")["files"]) == 2
    other = make_wheel(cfg.paths.store / "lambda", "lambda", "1.0")
    generator.update_paths(["lambda/" + other.name])
    assert generator.stats.root_writes == 2
    assert root_names(cfg) == ["kappa", "lambda"]


def test_generator_update_paths_handles_directories_moved_in_and_out(
        cfg: config.Config, generator: Generator, tmp_path: Path) -> None:
    generator.generate_all()
    outside = tmp_path / "outside" / "mu"
    make_wheel(outside, "mu", "1.0")
    make_wheel(outside / "deeper", "mu", "1.1")
    cfg.paths.store.mkdir(parents=True, exist_ok=True)
    outside.rename(cfg.paths.store / "mu")
    generator.update_paths(["mu"])
    assert [f["filename"] for f in project_json(cfg, "mu")["files"]] == [
        "mu-1.0-py3-none-any.whl", "mu-1.1-py3-none-any.whl"]
    (cfg.paths.store / "mu").rename(tmp_path / "gone")
    generator.update_paths(["mu"])
    assert root_names(cfg) == []
    generator.generate_all()
    assert generator.stats.files_read == 2


def test_generator_serves_one_of_two_identical_filenames_and_warns(
        cfg: config.Config, generator: Generator, caplog: pytest.LogCaptureFixture) -> None:
    first = make_wheel(cfg.paths.store / "a", "nu", "1.0")
    make_wheel(cfg.paths.store / "b", "nu", "1.0")
    caplog.set_level(logging.WARNING, logger="pypi_insiders")
    generator.generate_all()
    files = project_json(cfg, "nu")["files"]
    assert [f["url"].split("#")[0] for f in files] == [f"../../packages/a/{first.name}"]
    assert any("in the store twice" in r.getMessage() for r in caplog.records)


def test_generator_readers_only_ever_see_whole_pages(cfg: config.Config, generator: Generator) -> None:
    make_wheel(cfg.paths.store / "xi", "xi", "0.1")
    generator.generate_all()
    pages = [cfg.paths.index / "simple" / name for name in ("index.json", "xi/index.json")]
    stop = threading.Event()
    problems: list[str] = []
    reads = [0]

    def read_in_a_loop() -> None:
        deadline = time.monotonic() + 20
        while not stop.is_set() and time.monotonic() < deadline:
            for page in pages:
                try:
                    json.loads(page.read_bytes())
                    html = page.with_suffix(".html").read_text()
                except (ValueError, OSError) as error:
                    problems.append(f"{page}: {error}")
                else:
                    if not html.endswith("</html>\n"):
                        problems.append(f"{page}: half a page")
                reads[0] += 1

    reader = threading.Thread(target=read_in_a_loop)
    reader.start()
    try:
        for minor in range(1, 40):
            wheel = make_wheel(cfg.paths.store / "xi", "xi", f"0.{minor}.{'0' * 200}1")
            generator.update_paths([f"xi/{wheel.name}"])
    finally:
        stop.set()
        reader.join(30)
    assert not problems
    assert reads[0] > 40
    assert len(project_json(cfg, "xi")["files"]) == 40


def test_generate_command_builds_the_index(make_config: ConfigMaker, data_dir: Path) -> None:
    path = make_config()
    make_wheel(data_dir / "store" / "omicron", "omicron", "1.0")
    (data_dir / "store" / "omicron" / "omicron-2.0-py3-none-any.whl").write_bytes(b"not a zip")

    def generate() -> str:
        result = subprocess.run([sys.executable, "-m", "pypi_insiders", "--config", str(path), "generate"],
                                capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        return result.stderr

    first = generate()
    assert "not serving omicron/omicron-2.0-py3-none-any.whl: broken archive" in first
    assert "index generated: 1 project, 1 file; 1 project page regenerated, 0 unchanged" in first
    assert "1 store files not served" in first
    assert (data_dir / "index" / "simple" / "omicron" / "index.json").exists()
    again = generate()  # the warning is given once; the summary still counts the file
    assert "broken archive" not in again
    assert "0 project pages regenerated, 1 unchanged; 0 files read" in again
    assert "1 store files not served" in again


def test_generator_updates_during_a_full_scan_are_not_lost(
        cfg: config.Config, generator: Generator, tmp_path: Path) -> None:
    template = make_wheel(tmp_path / "template", "pi", "1.0")
    for index in range(300):  # enough directories for the walk to take a while
        (cfg.paths.store / f"d{index}").mkdir(parents=True)
        os.link(template, cfg.paths.store / f"d{index}" / template.name)
    generator.generate_all()
    scans = 0
    stop = threading.Event()

    def rescan_in_a_loop() -> None:
        nonlocal scans
        while not stop.is_set():
            generator.generate_all()
            scans += 1

    scanner = threading.Thread(target=rescan_in_a_loop)
    scanner.start()
    added = []
    try:
        for minor in range(1, 30):
            wheel = make_wheel(cfg.paths.store / f"d{minor * 7}", "pi", f"1.{minor}")
            generator.update_paths([f"d{minor * 7}/{wheel.name}"])
            added.append(wheel.name)
            (cfg.paths.store / f"d{minor * 7}" / template.name).unlink()
            generator.update_paths([f"d{minor * 7}/{template.name}"])
    finally:
        stop.set()
        scanner.join(60)
    assert scans > 1
    read_before = generator.stats.files_read
    generator.generate_all()
    assert generator.stats.files_read == read_before
    served = [f["filename"] for f in project_json(cfg, "pi")["files"]]
    assert served == [template.name, *added]


_COMPLETE_FILES = """
import json, random, sys, time
tails = json.load(open(sys.argv[1]))
random.shuffle(tails)
for path, tail in tails:
    with open(path, "ab") as out:
        out.write(bytes.fromhex(tail))
    time.sleep(0.002)
"""


def test_generator_reads_again_a_file_found_broken_while_it_was_written(
        cfg: config.Config, generator: Generator, tmp_path: Path) -> None:
    """A file read while still being written is broken; once whole (and notified, as the watcher
    would) it must be read again. A stat taken after the read made it look read whole: unserved
    until its next change. A cold scan with a pool of workers leaves the widest gap."""
    tails = []
    for index in range(work_pool.POOL_FROM + 100):
        wheel = make_wheel(tmp_path / "made", "rho", f"1.{index}")
        data = wheel.read_bytes()
        target = cfg.paths.store / f"d{index}" / wheel.name
        target.parent.mkdir(parents=True)
        target.write_bytes(data[:-200])  # no central directory yet: not a zip file
        tails.append((str(target), data[-200:].hex()))
    (tmp_path / "tails").write_text(json.dumps(tails))
    writer = subprocess.Popen([sys.executable, "-c", _COMPLETE_FILES, str(tmp_path / "tails")])
    try:
        generator.generate_all()  # the writer completes the files meanwhile, in no order
    finally:
        assert writer.wait(timeout=60) == 0
    generator.update_paths(str(path.relative_to(cfg.paths.store)) for path in cfg.paths.store.glob("*/*"))
    assert len(project_json(cfg, "rho")["files"]) == len(tails)


def test_generator_keeps_the_new_files_of_a_directory_back_after_the_walk_missed_it(
        cfg: config.Config, generator: Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory away while the full scan walks, back with a new file (recorded by its
    update_paths) before the scan takes the lock: diffed again, not dropped with its rows.
    The walk really runs; the wrapper only fixes when the directory comes and goes."""
    store = cfg.paths.store
    old = make_wheel(store / "tau", "tau", "1.0")
    generator.generate_all()
    walk = generator._sync.changed_dirs
    added: list[str] = []

    def walk_while_tau_is_away(top: str, known: dict[str, bytes]) -> tuple[list[str], set[str]]:
        (store / "tau").rename(store / ".tau-away")  # hidden: not walked
        try:
            return walk(top, known)
        finally:
            (store / ".tau-away").rename(store / "tau")
            added.append(make_wheel(store / "tau", "tau", "2.0").name)
            generator.update_paths([f"tau/{added[0]}"])

    monkeypatch.setattr(generator._sync, "changed_dirs", walk_while_tau_is_away)
    generator.generate_all()
    assert [f["filename"] for f in project_json(cfg, "tau")["files"]] == [old.name, *added]
    monkeypatch.undo()
    read_before = generator.stats.files_read
    generator.generate_all()
    assert generator.stats.files_read == read_before  # its rows and fingerprint agree with the store


def test_generator_pins_from_two_processes_are_merged(cfg: config.Config, generator: Generator) -> None:
    make_wheel(cfg.paths.store / "rho", "rho", "1.0")
    generator.generate_all()
    other = Generator.from_config(cfg)  # as `pypi-insiders generate` beside a running service
    make_wheel(cfg.paths.store / "sigma", "sigma", "1.0")
    other.generate_all()
    other.close()
    tau = make_wheel(cfg.paths.store / "tau", "tau", "1.0")
    generator.update_paths([f"tau/{tau.name}"])
    assert (cfg.paths.state / "pinned-projects.txt").read_text() == "rho\nsigma\ntau\n"


def test_generator_rebuilds_a_damaged_cache(
        cfg: config.Config, generator: Generator, caplog: pytest.LogCaptureFixture) -> None:
    make_wheel(cfg.paths.store / "upsilon", "upsilon", "1.0")
    generator.generate_all()
    generator.close()
    (cfg.paths.cache / "index.sqlite3").write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        (cfg.paths.cache / f"index.sqlite3{suffix}").unlink(missing_ok=True)
    caplog.set_level(logging.WARNING, logger="pypi_insiders")
    again = Generator.from_config(cfg)
    again.generate_all()
    assert any("rebuilding it from the store" in r.getMessage() for r in caplog.records)
    assert again.stats.files_read == 1
    assert [f["filename"] for f in project_json(cfg, "upsilon")["files"]] == ["upsilon-1.0-py3-none-any.whl"]
    again.close()


def test_generator_quotes_store_paths_in_urls(cfg: config.Config, generator: Generator) -> None:
    wheel = make_wheel(cfg.paths.store / "odd dir#1", "phi", "1.0")
    generator.generate_all()
    entry = project_json(cfg, "phi")["files"][0]
    assert entry["url"] == f"../../packages/odd%20dir%231/{wheel.name}#sha256={sha256(wheel)}"
    assert (cfg.paths.index / "packages" / "odd dir#1" / f"{wheel.name}.metadata").exists()


def test_generator_serves_zip_sdists_and_skips_broken_ones(
        cfg: config.Config, generator: Generator, caplog: pytest.LogCaptureFixture) -> None:
    directory = cfg.paths.store / "chi"
    directory.mkdir(parents=True)
    good = directory / "chi-1.0.zip"
    with zipfile.ZipFile(good, "w") as archive:
        archive.writestr("chi-1.0/PKG-INFO", "Metadata-Version: 2.1\nName: chi\nVersion: 1.0\n"
                                             "Requires-Python: >=3.10\n\n")
        archive.writestr("chi-1.0/setup.py", "")
    (directory / "chi-2.0.zip").write_bytes(good.read_bytes()[:-30])  # central directory cut off
    caplog.set_level(logging.WARNING, logger="pypi_insiders")
    generator.generate_all()
    files = project_json(cfg, "chi")["files"]
    assert [(f["filename"], f["requires-python"]) for f in files] == [("chi-1.0.zip", ">=3.10")]
    assert "core-metadata" not in files[0]
    assert [r.getMessage() for r in caplog.records if "chi-2.0.zip" in r.getMessage()]


def test_generator_cold_run_with_reader_threads_serves_everything(
        cfg: config.Config, generator: Generator, caplog: pytest.LogCaptureFixture) -> None:
    for index in range(12):  # enough directories, each with several files, for the reader threads
        for version in ("1.0", "1.1", "1.2"):
            make_wheel(cfg.paths.store / f"omega{index}", f"omega{index}", version)
        (cfg.paths.store / f"omega{index}" / f"omega{index}-2.0-py3-none-any.whl").write_bytes(b"junk")
    caplog.set_level(logging.WARNING, logger="pypi_insiders")
    generator.generate_all()
    assert generator.stats.files_read == 48
    for index in range(12):
        files = project_json(cfg, f"omega{index}")["files"]
        assert [f["filename"].split("-")[1] for f in files] == ["1.0", "1.1", "1.2"]
        for entry in files:
            metadata = cfg.paths.index / "packages" / f"omega{index}" / f"{entry['filename']}.metadata"
            assert entry["core-metadata"] == {"sha256": sha256(metadata)}
    assert len([r for r in caplog.records if "2.0-py3-none-any.whl" in r.getMessage()]) == 12


def test_generator_skips_symlinks_leading_out_of_the_store(
        cfg: config.Config, generator: Generator, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    outside = make_wheel(tmp_path / "elsewhere", "psi", "1.0")
    inside = make_wheel(cfg.paths.store / "real", "psi", "1.1")
    (cfg.paths.store / "psi").mkdir()
    (cfg.paths.store / "psi" / outside.name).symlink_to(outside)
    (cfg.paths.store / "psi" / "psi-1.1-py3-none-any.whl").symlink_to(inside)
    caplog.set_level(logging.WARNING, logger="pypi_insiders")
    generator.generate_all()
    urls = [f["url"].split("#")[0] for f in project_json(cfg, "psi")["files"]]
    assert urls == [f"../../packages/psi/{inside.name}"]  # the link inside the store is fine
    assert any("symbolic link out of the store" in r.getMessage() for r in caplog.records)


def test_generator_reads_a_big_cold_store_in_a_process_pool(cfg: config.Config, generator: Generator) -> None:
    """Enough directories for work_pool's processes: their facts and metadata files are the same."""
    count = work_pool.POOL_FROM + 10
    for number in range(count):
        make_wheel(cfg.paths.store / f"bulk-{number}", f"bulk-{number}", "1.0")
    generator.generate_all()
    assert generator.stats.files_read == count
    for number in (0, count - 1):
        (entry,) = project_json(cfg, f"bulk-{number}")["files"]
        packages = cfg.paths.index / "packages"
        metadata = (packages / f"bulk-{number}" / f"{entry['filename']}.metadata").read_bytes()
        assert metadata.startswith(b"Metadata-Version:")
        assert entry["core-metadata"] == {"sha256": hashlib.sha256(metadata).hexdigest()}
        wheel = cfg.paths.store / f"bulk-{number}" / entry["filename"]
        assert entry["hashes"] == {"sha256": hashlib.sha256(wheel.read_bytes()).hexdigest()}
