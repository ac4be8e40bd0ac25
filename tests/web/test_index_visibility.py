"""An upload (and a yank) is answered only once the generated index shows it: upload, then at once read the
project's pages from `pypi-insiders serve`, with one process and with a forked worker that has
no generator of its own (which process took each upload is read from /proc).
"""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.conftest import ConfigMaker
from tests.support.distfiles import make_wheel
from tests.support.server_fixtures import JSON_TYPE, basic, request, serve_process
from tests.support.upload_fixtures import BOUNDARY, SECRET, multipart, twine_fields, with_alice

pytestmark = pytest.mark.slow

_ROUNDS = 6  # uploads at least; more (up to _MAX_ROUNDS) until every process took one
_MAX_ROUNDS = 30


def _socket_inode(server_port: int, client_port: int) -> str | None:
    """The inode of the server's end of our connection, from /proc/net/tcp (hex ports)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = fields[1].rsplit(":", 1)[1], fields[2].rsplit(":", 1)[1]
            if int(local, 16) == server_port and int(remote, 16) == client_port:
                return fields[9]
    return None


def _holder(pids: set[int], inode: str) -> int | None:
    """Which of `pids` holds the socket `inode` open."""
    target = f"socket:[{inode}]"
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if fd.readlink().as_posix() == target:
                    return pid
            except OSError:
                continue
    return None


def _upload(port: int, wheel: Path, version: str, pids: set[int]) -> tuple[int, float, int | None]:
    """(status, seconds until the answer, PID of the process that answered)."""
    data = wheel.read_bytes()
    body = multipart(twine_fields(wheel.name, data, "Race-Demo", version), (wheel.name, data))
    return _post(port, "/legacy/", body, f"multipart/form-data; boundary={BOUNDARY}", pids)


def _post(port: int, path: str, body: bytes, content_type: str,
          pids: set[int]) -> tuple[int, float, int | None]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        began = time.monotonic()
        conn.request("POST", path, body=body, headers={
            "Content-Type": content_type, "Content-Length": str(len(body)),
            "Authorization": basic("alice", SECRET)})
        response = conn.getresponse()
        response.read()
        took = time.monotonic() - began
        assert conn.sock is not None
        inode = _socket_inode(port, conn.sock.getsockname()[1])  # kept alive: still open server-side
        return response.status, took, _holder(pids, inode) if inode else None
    finally:
        conn.close()


def _children(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


@pytest.mark.parametrize("processes", [1, 2])
def test_upload_visibility_the_pages_list_a_file_as_soon_as_its_upload_is_answered(
        make_config: ConfigMaker, tmp_path: Path, processes: int) -> None:
    config_file = with_alice(make_config(upload={"enabled": True}, server={"processes": processes}))
    with serve_process(config_file) as running:
        pids = {running.process.pid, *_children(running.process.pid)}
        assert len(pids) == processes
        port = int(running.url.rstrip("/").rsplit(":", 1)[1])
        answered_by: set[int | None] = set()
        times = []
        for round_ in range(_MAX_ROUNDS):
            if round_ >= _ROUNDS and answered_by >= pids:
                break
            wheel = make_wheel(tmp_path / f"dist{round_}", "Race-Demo", f"1.{round_}")
            status, took, pid = _upload(port, wheel, f"1.{round_}", pids)
            assert status == 200, running.output()
            page = request(running.url, "/simple/race-demo/", headers={"Accept": JSON_TYPE})
            assert page.status == 200
            assert wheel.name in {f["filename"] for f in json.loads(page.body)["files"]}, round_
            html = request(running.url, "/simple/race-demo/")
            assert f">{wheel.name}<".encode() in html.body, round_
            answered_by.add(pid)
            times.append(took)
        assert answered_by == pids, f"uploads answered by {answered_by}, processes {pids}"
        assert "not yet listed" not in running.output()
        print(f"processes={processes}: {len(times)} uploads, answered in "
              f"{min(times):.3f}-{max(times):.3f} s")


def _yanked(url: str) -> set[object]:
    reply = request(url, "/simple/race-demo/", headers={"Accept": JSON_TYPE})
    return {f["yanked"] for f in json.loads(reply.body)["files"]}


def test_upload_visibility_a_yank_through_a_worker_is_on_the_page_when_answered(
        make_config: ConfigMaker, tmp_path: Path) -> None:
    config_file = with_alice(make_config(upload={"enabled": True}, server={"processes": 2}))
    with serve_process(config_file) as running:
        pids = {running.process.pid, *_children(running.process.pid)}
        port = int(running.url.rstrip("/").rsplit(":", 1)[1])
        wheel = make_wheel(tmp_path / "dist", "Race-Demo", "1.0")
        assert _upload(port, wheel, "1.0", pids)[0] == 200
        answered_by: set[int | None] = set()
        for round_ in range(_MAX_ROUNDS):
            if round_ >= _ROUNDS and answered_by >= pids:
                break
            path, reason = ("/-/unyank", False) if round_ % 2 else ("/-/yank", f"round {round_}")
            body = urlencode({"project": "race-demo", "version": "1.0", "reason": reason or ""}).encode()
            status, _took, pid = _post(port, path, body, "application/x-www-form-urlencoded", pids)
            assert status == 200, running.output()
            assert _yanked(running.url) == {reason}, round_
            answered_by.add(pid)
        assert answered_by == pids, f"answered by {answered_by}, processes {pids}"
