"""`pypi-insiders serve` as a real process: start-up, signals, reload, systemd notifications,
the watcher publishing new files, and the pinned-name rule end to end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pypi_insiders import config
from pypi_insiders.index import generate
from pypi_insiders.service.index_service import Service, start_heartbeat
from tests.conftest import ConfigMaker
from tests.support.distfiles import make_wheel
from tests.support.server_fixtures import (
    JSON_TYPE as JSON,
)
from tests.support.server_fixtures import (
    FakeUpstream,
    ThreadedServer,
    pypi_insiders,
    request,
    serve_process,
    service_env,
    stop_process,
    wait_for,
)


@pytest.fixture
def store(data_dir: Path) -> Path:
    make_wheel(data_dir / "store" / "local-pkg", "local-pkg", "1.0")
    return data_dir / "store"


@pytest.fixture
def upstream() -> Iterator[tuple[FakeUpstream, ThreadedServer]]:
    fake = FakeUpstream(projects={"remote-only": {"remote_only-1.0-py3-none-any.whl": b"x"},
                                  "local-pkg": {"local_pkg-99.0-py3-none-any.whl": b"public"}})
    with ThreadedServer(fake.app) as server:
        yield fake, server


def test_service_starts_logs_where_and_serves(make_config: ConfigMaker, store: Path) -> None:
    with serve_process(make_config()) as running:
        line = next(entry for entry in running.output().splitlines() if " at http://" in entry)
        assert "INFO" in line
        assert str(store) in line
        assert "upstream http://127.0.0.1:9/simple/ (config)" in line
        assert ":0/" not in running.url  # the effective port, not the configured 0
        reply = request(running.url, "/simple/local-pkg/")
        assert reply.status == 200
        assert b"local_pkg-1.0-py3-none-any.whl" in reply.body


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_service_stops_cleanly_on_signal(make_config: ConfigMaker, store: Path, signum: int) -> None:
    with serve_process(make_config()) as running:
        running.process.send_signal(signum)
        assert running.process.wait(timeout=15) == 0, running.output()
        assert "stopped" in running.output()


def test_service_broken_config_exits_2_with_one_line(tmp_path: Path) -> None:
    config_file = tmp_path / "broken.toml"
    config_file.write_text('[server]\nlisten = "nowhere"\n')
    result = subprocess.run([*pypi_insiders(), "--config", str(config_file), "serve"],
                            env=service_env(), capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(config_file) in lines[0]
    assert "server.listen" in lines[0]


def test_service_sighup_reload_changes_fallback(make_config: ConfigMaker, store: Path,
                                                upstream: tuple[FakeUpstream, ThreadedServer]) -> None:
    url = upstream[1].url + "simple/"
    config_file = make_config(upstream={"url": url, "fallback": "off"})
    with serve_process(config_file) as running:
        assert request(running.url, "/simple/remote-only/").status == 404
        make_config(upstream={"url": url, "fallback": "redirect"})
        running.process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: request(running.url, "/simple/remote-only/").status == 302)
        assert request(running.url, "/simple/local-pkg/").status == 200
        assert running.process.poll() is None


def test_service_sighup_with_a_broken_config_keeps_the_old_one(make_config: ConfigMaker, store: Path,
                                                               upstream: tuple[FakeUpstream, ThreadedServer]
                                                               ) -> None:
    config_file = make_config(upstream={"url": upstream[1].url + "simple/", "fallback": "redirect"})
    with serve_process(config_file) as running:
        config_file.write_text('[upstream]\nfallback = "sideways"\n')
        running.process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "keeping the running configuration" in running.output())
        assert "upstream.fallback" in running.output()
        assert request(running.url, "/simple/remote-only/").status == 302
        assert running.process.poll() is None


def test_service_publishes_a_new_file_while_running(make_config: ConfigMaker, store: Path,
                                                       tmp_path: Path) -> None:
    with serve_process(make_config(index={"debounce": 0.05})) as running:
        assert request(running.url, "/simple/fresh-pkg/").status == 404
        wheel = make_wheel(tmp_path / "build", "fresh-pkg", "2.0")
        (store / "fresh-pkg").mkdir()
        wheel.replace(store / "fresh-pkg" / wheel.name)  # how fast: bench/ measures it
        assert wait_for(lambda: request(running.url, "/simple/fresh-pkg/").status == 200, timeout=10)
        assert request(running.url, f"/packages/fresh-pkg/{wheel.name}").status == 200


def test_service_pinned_name_never_falls_through(make_config: ConfigMaker, store: Path,
                                                 upstream: tuple[FakeUpstream, ThreadedServer]) -> None:
    """Deleting the last file of a local project gives 404, not the public project of that name."""
    config_file = make_config(upstream={"url": upstream[1].url + "simple/", "fallback": "proxy"},
                              index={"debounce": 0.05})
    with serve_process(config_file) as running:
        assert request(running.url, "/simple/local-pkg/").status == 200
        for wheel in (store / "local-pkg").iterdir():
            wheel.unlink()
        (store / "local-pkg").rmdir()
        assert wait_for(lambda: request(running.url, "/simple/local-pkg/").status == 404)
        reply = request(running.url, "/simple/local-pkg/")
        assert b"pinned to local" in reply.body
        assert request(running.url, "/simple/remote-only/").status == 200  # proxy works otherwise
    assert upstream[0].count("/simple/local-pkg/") == 0


def _notifications(sock: socket.socket, until: str, timeout: float) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not any(until in m for m in seen):
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            seen.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    return seen


class _Notifications:
    """Every datagram sent to a notify socket, read by a thread from the moment it is bound.

    Read from the start, not once serve answers: the socket queues only
    net.unix.max_dgram_qlen (10) datagrams, and the pings of a slow start would fill it.
    """

    def __init__(self, path: str) -> None:
        self.messages: list[str] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(path)
        self._sock.settimeout(0.1)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read)
        self._thread.start()

    def _read(self) -> None:
        while not self._done.is_set():
            with contextlib.suppress(TimeoutError):
                self.messages.append(self._sock.recv(4096).decode())

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        self._sock.close()

    def after(self, first: str, then: str, *, start: int = 0, timeout: float = 30.0) -> list[str] | None:
        """The messages from `start` on once one holding `then` has come after one holding
        `first` (waiting up to `timeout`); None if none did."""
        def found() -> bool:
            sent = self.messages[start:]
            index = next((i for i, m in enumerate(sent) if first in m), None)
            return index is not None and any(then in m for m in sent[index + 1:])
        return self.messages[start:] if wait_for(found, timeout=timeout) else None


def test_service_notifies_ready_after_generation_and_pings_the_watchdog(make_config: ConfigMaker,
                                                                        store: Path, tmp_path: Path) -> None:
    notifications = _Notifications(str(tmp_path / "notify.sock"))
    try:
        env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"}
        with serve_process(make_config(), env=env) as running:
            # Pings may come before READY=1 too (a loaded host makes the first generation slow):
            # what must hold is the order of STATUS and READY, and pings once ready.
            messages = notifications.after("READY=1", "WATCHDOG=1")
            assert messages is not None, notifications.messages
            ready = next(i for i, m in enumerate(messages) if "READY=1" in m)
            assert any("STATUS=generating" in m for m in messages[:ready])
            assert running.url in messages[ready]
            sent = len(notifications.messages)
            running.process.send_signal(signal.SIGHUP)
            reloaded = notifications.after("RELOADING=1", "READY=1", start=sent)
            assert reloaded is not None, notifications.messages
            assert stop_process(running.process) == 0
            assert wait_for(lambda: any("STOPPING=1" in m for m in notifications.messages[sent:]))
    finally:
        notifications.close()


def _children(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def test_service_processes_share_the_socket_and_reload_together(
        make_config: ConfigMaker, store: Path, upstream: tuple[FakeUpstream, ThreadedServer]) -> None:
    url = upstream[1].url + "simple/"
    config_file = make_config(server={"processes": 3}, upstream={"url": url, "fallback": "off"})
    with serve_process(config_file) as running:
        workers = _children(running.process.pid)
        assert len(workers) == 2
        assert all(request(running.url, "/simple/local-pkg/").status == 200 for _ in range(30))
        make_config(server={"processes": 3}, upstream={"url": url, "fallback": "redirect"})
        running.process.send_signal(signal.SIGHUP)
        # fresh connections land on any process: every one of them must have reloaded
        assert wait_for(lambda: all(request(running.url, "/simple/remote-only/").status == 302
                                    for _ in range(30)))
        assert stop_process(running.process) == 0
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers)


def test_service_default_runs_one_process_per_core(make_config: ConfigMaker, store: Path) -> None:
    """No `processes` key: as many processes as usable cores (at most 4), workers forked."""
    with serve_process(make_config()) as running:
        expected = min(len(os.sched_getaffinity(0)), 4)
        assert len(_children(running.process.pid)) == expected - 1
        assert all(request(running.url, "/simple/local-pkg/").status == 200 for _ in range(10))


def test_service_workers_exit_when_the_parent_is_killed(make_config: ConfigMaker, store: Path) -> None:
    with serve_process(make_config(server={"processes": 2})) as running:
        (worker,) = _children(running.process.pid)
        running.process.kill()
        running.process.wait(timeout=10)
        assert wait_for(lambda: not Path(f"/proc/{worker}").exists(), timeout=10)


def test_service_readers_see_only_whole_pages_during_regeneration(make_config: ConfigMaker, store: Path,
                                                                    tmp_path: Path) -> None:
    with serve_process(make_config(index={"debounce": 0.01})) as running:
        stop = threading.Event()
        problems: list[str] = []
        seen = {"pages": 0}

        def read() -> None:
            while not stop.is_set():
                for path, accept in (("/simple/", ""), ("/simple/churn/", ""), ("/simple/churn/", JSON)):
                    reply = request(running.url, path, headers={"Accept": accept} if accept else {})
                    if reply.status != 200:
                        continue
                    seen["pages"] += 1
                    if int(reply.header("Content-Length") or -1) != len(reply.body):
                        problems.append(f"{path}: length mismatch")
                    elif accept and not _parses(reply.body):
                        problems.append(f"{path}: broken JSON")
                    elif not accept and not reply.body.rstrip().endswith(b"</html>"):
                        problems.append(f"{path}: truncated HTML")

        readers = [threading.Thread(target=read) for _ in range(4)]
        for reader in readers:
            reader.start()
        try:
            for version in range(1, 21):
                wheel = make_wheel(tmp_path / "build", "churn", f"1.{version}")
                (store / "churn").mkdir(exist_ok=True)
                wheel.replace(store / "churn" / wheel.name)
                time.sleep(0.05)
            assert wait_for(lambda: b"churn-1.20" in request(running.url, "/simple/churn/").body.replace(
                b"_", b"-"), timeout=10)
        finally:
            stop.set()
            for reader in readers:
                reader.join(timeout=20)
        assert problems == []
        assert seen["pages"] > 20


def _parses(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("processes", [1, 2])
def test_service_port_in_use_exits_69_with_one_line(make_config: ConfigMaker, store: Path,
                                                    processes: int) -> None:
    """Not 2, the configuration error the unit does not restart: the port may be free again soon."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config_file = make_config(server={"listen": f"127.0.0.1:{port}", "processes": processes})
        result = subprocess.run([*pypi_insiders(), "--config", str(config_file), "serve"],
                                env=service_env(), capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 69
    errors = [line for line in result.stderr.splitlines() if line.startswith("pypi-insiders:")]
    expected = (f"pypi-insiders: server.listen: cannot listen on 127.0.0.1:{port}: Address already in use "
                f"(`ss -ltnp 'sport = {port}'` shows who holds it)")
    assert errors == [expected]
    assert "Traceback" not in result.stderr


def test_service_an_address_not_on_this_host_is_retried_too(make_config: ConfigMaker, store: Path) -> None:
    config_file = make_config(server={"listen": "192.0.2.1:31411"})  # TEST-NET-1: on no host
    result = subprocess.run([*pypi_insiders(), "--config", str(config_file), "serve"],
                            env=service_env(), capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 69, result.stderr
    assert ("pypi-insiders: server.listen: cannot listen on 192.0.2.1:31411: Cannot assign requested "
            "address (not an address of this host, yet)") in result.stderr


def test_service_warm_restart_serves_at_once_and_catches_up(make_config: ConfigMaker, store: Path,
                                                            tmp_path: Path) -> None:
    config_file = make_config()
    with serve_process(config_file) as running:
        assert request(running.url, "/simple/local-pkg/").status == 200
    make_wheel(store / "added-while-down", "added-while-down", "1.0")
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        with serve_process(config_file, env={"NOTIFY_SOCKET": path}) as running:
            assert "serving the index left by the last run" in running.output()
            assert request(running.url, "/simple/local-pkg/").status == 200
            assert wait_for(lambda: request(running.url, "/simple/added-while-down/").status == 200)
            messages = _notifications(sock, "READY=1", timeout=10)
            assert any("READY=1" in m for m in messages)
            assert stop_process(running.process) == 0


def test_service_command_line_overrides_survive_a_reload(make_config: ConfigMaker, store: Path,
                                                         upstream: tuple[FakeUpstream, ThreadedServer],
                                                         tmp_path: Path) -> None:
    other_store = tmp_path / "other-store"
    make_wheel(other_store / "other-pkg", "other-pkg", "1.0")
    target = upstream[1].url + "simple/"
    config_file = make_config(upstream={"fallback": "off"})
    args = ("--listen", "127.0.0.1:0", "--store", str(other_store), "--upstream", target,
            "--fallback", "redirect")
    with serve_process(config_file, *args) as running:
        assert request(running.url, "/simple/other-pkg/").status == 200
        assert request(running.url, "/simple/local-pkg/").status == 302  # not in the --store
        reply = request(running.url, "/simple/remote-only/")
        assert reply.header("Location") == target + "remote-only/"
        running.process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "configuration reloaded" in running.output())
        reply = request(running.url, "/simple/remote-only/")
        assert reply.status == 302
        assert reply.header("Location") == target + "remote-only/"


def test_service_asks_for_more_start_time_only_while_the_first_generation_progresses(
        make_config: ConfigMaker, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The heartbeat the service runs until READY=1, against a real notify socket and a real cold
    generation; it must stay quiet once nothing moves, so that a hung start still times out."""
    for number in range(300):
        make_wheel(data_dir / "store" / f"p{number}", f"p{number}", "1.0")
    loaded = config.load(str(make_config()))
    path = str(tmp_path / "notify.sock")
    received: list[tuple[float, str]] = []
    done = threading.Event()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(0.05)

        def receive() -> None:  # as systemd does: always reading, so no sender ever blocks
            while not done.is_set():
                try:
                    received.append((time.monotonic(), sock.recv(4096).decode()))
                except TimeoutError:
                    continue

        receiver = threading.Thread(target=receive)
        receiver.start()
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        service = Service(loaded, None, generate.Generator.from_config(loaded))
        heartbeat = threading.Thread(target=start_heartbeat, args=(service, 0.01))
        heartbeat.start()
        try:
            service.generator.generate_all()
            generated = time.monotonic()
            time.sleep(0.3)
        finally:
            service.ready.set()
            heartbeat.join(5)
            done.set()
            receiver.join(5)
    assert not heartbeat.is_alive()
    during = [m for t, m in received if t <= generated + 0.05]
    after = [m for t, m in received if t > generated + 0.05]
    assert during, "no EXTEND_TIMEOUT_USEC while 300 files were read"
    assert all(m.startswith("EXTEND_TIMEOUT_USEC=60000000\nSTATUS=generating the index: ") for m in during)
    assert after == []  # nothing moves: nothing is sent
