"""Yanking without editing the config, and removing a file for good, against `pypi-insiders serve`:
`pypi-insiders yank` and `remove` as subprocesses, `POST /-/yank` and `/-/unyank` over HTTP.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest

from pypi_insiders import config
from pypi_insiders.store import Store
from pypi_insiders.web.passwords import make_token
from tests.conftest import ConfigMaker
from tests.support.distfiles import make_sdist, make_wheel
from tests.support.server_fixtures import (
    JSON_TYPE,
    Running,
    basic,
    request,
    serve_process,
    service_env,
    wait_for,
)
from tests.support.upload_fixtures import SECRET, multipart, post, twine_fields, with_alice

pytestmark = pytest.mark.slow
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass
class Index:
    running: Running
    config_file: Path
    wheel: Path
    sdist: Path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "pypi_insiders", "--config", str(self.config_file), *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                              env=service_env())

    def yanked(self, version: str = "1.0") -> set[object]:
        """The `yanked` values of the release's files on the JSON page."""
        reply = request(self.running.url, "/simple/yank-demo/", headers={"Accept": JSON_TYPE})
        files = json.loads(reply.body)["files"] if reply.status == 200 else []
        return {f["yanked"] for f in files if f"-{version}" in f["filename"]}

    def api(self, path: str, auth: str | None, **fields: str) -> tuple[int, str, dict[str, str]]:
        headers = {**FORM, **({"Authorization": auth} if auth else {})}
        reply = request(self.running.url, path, "POST", headers, body=urlencode(fields).encode())
        return reply.status, reply.body.decode().strip(), reply.headers


@pytest.fixture
def index(make_config: ConfigMaker, tmp_path: Path) -> Iterator[Index]:
    config_file = with_alice(make_config(upload={"enabled": True}, yank={"yank-demo": {"0.9": "in config"}}))
    argv = [sys.executable, "-m", "pypi_insiders", "--config", str(config_file), "users", "add", "bob",
            "--upload", "other-project"]
    made = subprocess.run(argv, input=SECRET + "\n", capture_output=True, text=True, timeout=60, check=False,
                          env=service_env())
    assert made.returncode == 0, made.stderr
    store = Store(config.load(str(config_file)).paths.store)
    wheel = make_wheel(tmp_path / "d", "yank-demo", "1.0")
    sdist = make_sdist(tmp_path / "d", "yank-demo", "1.0")
    for path in (wheel, sdist, make_wheel(tmp_path / "d", "yank-demo", "0.9")):
        store.add(path.name, path)
    with serve_process(config_file) as running:
        yield Index(running, config_file, wheel, sdist)


def test_yank_cli_yanks_and_unyanks_in_the_running_index(index: Index) -> None:
    assert index.yanked() == {False}
    done = index.cli("yank", "Yank_Demo", "1.0", "--reason", "broken on 3.12")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "yank-demo 1.0: yanked (broken on 3.12)"
    assert wait_for(lambda: index.yanked() == {"broken on 3.12"}), index.running.output()
    html = request(index.running.url, "/simple/yank-demo/").body.decode()
    assert html.count('data-yanked="broken on 3.12"') == 2
    assert index.yanked("0.9") == {"in config"}  # the config's yanks still apply beside it

    undone = index.cli("yank", "yank-demo", "1.0", "--undo")
    assert undone.returncode == 0, undone.stderr
    assert wait_for(lambda: index.yanked() == {False}), index.running.output()


@pytest.mark.parametrize(("args", "message"), [
    (["yank", "yank-demo", "not a version"], "pypi-insiders: 'not a version' is not a valid version"),
    (["yank", "yank-demo", "3.0"], "pypi-insiders: yank-demo has no release 3.0 in the index"),
    (["yank", "yank-demo", "1.0", "--undo"], "pypi-insiders: yank-demo 1.0 is not yanked"),
    (["yank", "yank-demo", "0.9", "--undo"], "is yanked in "),
    (["yank", "yank-demo", "1.0", "--reason", "two\nlines"], "one line of printable characters"),
    (["remove", "yank_demo-7.0-py3-none-any.whl"], "yank_demo-7.0-py3-none-any.whl: not in the store"),
    (["remove", "not-a-distribution.txt"], "pypi-insiders: "),
])
def test_yank_cli_errors_are_one_line(index: Index, args: list[str], message: str) -> None:
    done = index.cli(*args)
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert message in done.stderr


def test_yank_api_answers_once_the_page_shows_it(index: Index) -> None:
    alice = basic("alice", SECRET)
    status, text, _ = index.api("/-/yank", alice, project="Yank.Demo", version="1.0", reason="use 1.1")
    assert (status, text) == (200, "yank-demo 1.0: yanked")
    assert index.yanked() == {"use 1.1"}  # no waiting
    status, text, _ = index.api("/-/unyank", alice, project="yank-demo", version="1.0")
    assert (status, text) == (200, "yank-demo 1.0: un-yanked")
    assert index.yanked() == {False}
    assert index.api("/-/unyank", alice, project="yank-demo", version="1.0")[0] == 409
    assert "yank-demo 1.0" in index.running.output()


def test_yank_api_refusals(index: Index) -> None:
    status, _text, headers = index.api("/-/yank", None, project="yank-demo", version="1.0")
    assert status == 401
    assert headers["www-authenticate"].startswith("Basic")
    assert index.api("/-/yank", basic("alice", "wrong-secret"), project="yank-demo", version="1.0")[0] == 403
    token = make_token("al")  # the token as the user name (fields swapped): refused, never logged
    assert index.api("/-/yank", basic(token, "__token__"), project="yank-demo", version="1.0")[0] == 403
    status, text, _ = index.api("/-/yank", basic("bob", SECRET), project="yank-demo", version="1.0")
    assert (status, text) == (403, "user 'bob' may not change yank-demo")
    alice = basic("alice", SECRET)
    assert index.api("/-/yank", alice, project="yank-demo", version="3.0")[0] == 404
    assert index.api("/-/yank", alice, project="yank-demo", version="x y")[0] == 400
    assert index.api("/-/yank", alice, version="1.0")[0] == 400
    headers = {"Authorization": alice, "Content-Type": "text/plain"}
    reply = request(index.running.url, "/-/yank", "POST", headers, body=b"project=yank-demo&version=1.0")
    assert reply.status == 415
    assert index.yanked() == {False}
    assert "invalid credentials for an unknown user" in index.running.output()
    assert token not in index.running.output()


def test_remove_deletes_the_file_and_its_name_is_never_reused(index: Index) -> None:
    done = index.cli("remove", str(index.wheel))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{index.wheel.name}: removed")
    store = config.load(str(index.config_file)).paths.store
    assert not (store / "yank-demo" / index.wheel.name).exists()
    assert wait_for(lambda: index.yanked() == {False} and _listed(index) == {index.sdist.name,
                                                                            "yank_demo-0.9-py3-none-any.whl"})
    data = index.wheel.read_bytes()
    port = int(index.running.url.rstrip("/").rsplit(":", 1)[1])
    again = post(port, multipart(twine_fields(index.wheel.name, data, "yank-demo", "1.0"),
                                 (index.wheel.name, data)), auth=basic("alice", SECRET))
    assert again.status == 400
    assert "cannot be reused" in again.text
    assert not (store / "yank-demo" / index.wheel.name).exists()


def _listed(index: Index) -> set[str]:
    reply = request(index.running.url, "/simple/yank-demo/", headers={"Accept": JSON_TYPE})
    return {f["filename"] for f in json.loads(reply.body)["files"]} if reply.status == 200 else set()
