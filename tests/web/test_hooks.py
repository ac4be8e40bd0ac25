"""`POST /-/hooks/KEY` against a real waitress server: every refusal, every forge's tag push, replays
across processes, coalescing, and an answer in milliseconds while a fetch run holds the lock."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import io
import json
import logging
import multiprocessing
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pypi_insiders import config, deliveries, fetch_queue
from pypi_insiders.config import Config
from pypi_insiders.files import exclusive_lock
from pypi_insiders.service.server import create_server
from pypi_insiders.web.app import make_app
from tests.conftest import ConfigMaker
from tests.support import hook_fixtures as h
from tests.support.server_fixtures import ThreadedServer, request

KEY = "team/project"
URL = "/-/hooks/team/project"


def _config(make_config: ConfigMaker, *, enabled: bool = True, secret: bool = True) -> Config:
    hook = {"webhook_secret": "hook-p"} if secret else {}
    repos: dict[str, Any] = {KEY: {"url": "file:///nowhere", **hook}, "other": {"url": "file:///elsewhere"}}
    loaded = config.load(str(make_config(webhooks={"enabled": enabled}, repos=repos)))
    loaded.webhooks.secrets_dir.mkdir(exist_ok=True)
    (loaded.webhooks.secrets_dir / "hook-p").write_text(f"{h.SECRET}\n")
    (loaded.webhooks.secrets_dir / "hook-p").chmod(0o600)
    return loaded


@pytest.fixture
def hooked(make_config: ConfigMaker) -> Iterator[tuple[Config, ThreadedServer]]:
    loaded = _config(make_config)
    with ThreadedServer(make_app(loaded)) as server:
        yield loaded, server


def _post(server: ThreadedServer, delivery: tuple[dict[str, str], bytes], path: str = URL) -> Any:
    headers, body = delivery
    return request(server.url, path, "POST", headers, body=body)


def _other_body(delivery: tuple[dict[str, str], bytes]) -> tuple[dict[str, str], bytes]:
    """The signature of one body over another: the right secret, the wrong bytes."""
    return delivery[0], delivery[1] + b" "


def _signed_body(delivery: tuple[dict[str, str], bytes], body: bytes) -> tuple[dict[str, str], bytes]:
    return dict(delivery[0], **{"X-Hub-Signature-256": f"sha256={h.hexmac(h.SECRET, body)}"}), body


# --------------------------------------------------------------------------- refusals


def test_hooks_unknown_key_no_secret_and_disabled_are_the_same_404(make_config: ConfigMaker) -> None:
    answers = []
    for enabled, secret, path in ((True, True, "/-/hooks/no/such"), (True, True, "/-/hooks/other"),
                                  (True, False, URL), (False, True, URL)):
        loaded = _config(make_config, enabled=enabled, secret=secret)
        with ThreadedServer(make_app(loaded)) as server:
            reply = _post(server, h.github("push", h.github_tag_push()), path)
            get = request(server.url, path)
        headers = sorted((k, v) for k, v in reply.headers.items() if k != "date")
        answers.append((reply.status, reply.body, headers))
        assert get.status == 404
        assert h.queued(loaded.paths.state) == []
    assert answers[0][0] == 404
    assert all(answer == answers[0] for answer in answers), answers


def test_hooks_a_missing_secret_file_is_404_and_logged(make_config: ConfigMaker,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    loaded = _config(make_config)
    (loaded.webhooks.secrets_dir / "hook-p").unlink()
    with ThreadedServer(make_app(loaded)) as server:
        assert _post(server, h.github("push", h.github_tag_push())).status == 404
    assert any("repos.team/project.webhook_secret" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("delivery", "why"),
    [
        (h.github("push", h.github_tag_push()), None),  # control: accepted
        (({"Content-Type": "application/json", "X-GitHub-Event": "push"}, b"{}"), "unsigned"),
        (h.github("push", h.github_tag_push(), secret="a different secret of some length"),
         "wrong signature"),
        (_other_body(h.github("push", h.github_tag_push())), "wrong signature"),
        (h.gitlab({"object_kind": "tag_push", "after": "b" * 40}, token="not the token at all"),
         "wrong token"),
    ],
)
def test_hooks_signatures_over_http(hooked: tuple[Config, ThreadedServer],
                                    delivery: tuple[dict[str, str], bytes], why: str | None,
                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pypi_insiders.web.hooks")
    loaded, server = hooked
    reply = _post(server, delivery)
    if why is None:
        assert reply.status == 202
        return
    assert reply.status == 401
    assert reply.header("www-authenticate")
    assert h.queued(loaded.paths.state) == []
    entry = next(r for r in caplog.records if r.name == "pypi_insiders.web.hooks")
    assert f"refused:{why}" == entry.OUTCOME  # type: ignore[attr-defined]


def test_hooks_sha1_alone_is_refused(hooked: tuple[Config, ThreadedServer]) -> None:
    loaded, server = hooked
    headers, body = h.gitea("push", {"ref": "refs/tags/v1", "after": "c" * 40})
    del headers["X-Gitea-Signature"]  # what is left: a correct `X-Hub-Signature: sha1=`
    assert _post(server, (headers, body)).status == 401
    assert h.queued(loaded.paths.state) == []


def test_hooks_failures_count_toward_the_limit(hooked: tuple[Config, ThreadedServer]) -> None:
    loaded, server = hooked
    wrong = h.github("push", h.github_tag_push(), secret="a guess at the secret, wrong")
    statuses = [_post(server, wrong).status for _ in range(10)]
    assert statuses == [401] * 10
    limited = _post(server, h.github("push", h.github_tag_push()))  # even the right secret waits now
    assert limited.status == 429
    assert int(limited.header("retry-after") or 0) > 0
    assert h.queued(loaded.paths.state) == []


def test_hooks_method_length_and_size(hooked: tuple[Config, ThreadedServer]) -> None:
    loaded, server = hooked
    get = request(server.url, URL)
    assert (get.status, get.header("allow")) == (405, "POST")
    host, port = server.url.removeprefix("http://").rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(f"POST {URL} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        assert conn.recv(100).startswith(b"HTTP/1.1 411 ")
    headers, _body = h.github("push", h.github_tag_push())
    big = b"x" * (loaded.webhooks.max_body + 1)
    assert request(server.url, URL, "POST", headers, body=big).status == 413
    assert h.queued(loaded.paths.state) == []


class _Unreadable(io.RawIOBase):
    def read(self, size: int = -1) -> bytes:
        msg = "the body was read"
        raise AssertionError(msg)


def test_hooks_oversized_body_is_refused_unread(make_config: ConfigMaker) -> None:
    loaded = _config(make_config)
    app = make_app(loaded)
    answers: list[str] = []
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": URL, "QUERY_STRING": "", "REMOTE_ADDR": "127.0.0.1",
               "CONTENT_LENGTH": str(loaded.webhooks.max_body + 1), "wsgi.input": _Unreadable()}
    app(environ, lambda status, headers: answers.append(status))
    assert answers[0].startswith("413 ")
    app.close()


# --------------------------------------------------------------------------- accepted deliveries


@pytest.mark.parametrize("shape", sorted(h.tag_shapes()))
def test_hooks_each_forge_tag_push_queues_one_entry(hooked: tuple[Config, ThreadedServer],
                                                    shape: str) -> None:
    loaded, server = hooked
    reply = _post(server, h.tag_shapes()[shape])
    assert (reply.status, reply.body) == (202, b"queued\n")
    [entry] = h.queued(loaded.paths.state)
    assert (fetch_queue.queue_dir(loaded.paths.state) / entry).read_text() == KEY
    last = deliveries.last(deliveries.deliveries_dir(loaded.paths.state), KEY)
    assert last is not None
    assert (last.forge, last.outcome) == (shape.split("-", maxsplit=1)[0], "queued")


@pytest.mark.parametrize(
    ("delivery", "status", "body"),
    [
        (h.github("ping", {"zen": "Design for failure.", "hook_id": 7}), 200, b"pong\n"),
        (h.github("push", {"ref": "refs/heads/main", "after": "a" * 40}), 202, b"ignored\n"),
        (h.github("push", {"ref": "refs/tags/v1", "deleted": True, "after": h.ZERO}), 202, b"ignored\n"),
        (h.gitlab({"object_kind": "tag_push", "after": h.ZERO}), 202, b"ignored\n"),
        (h.gitlab({"object_kind": "push", "ref": "refs/heads/main"}, event="Push Hook"), 202, b"ignored\n"),
        (_signed_body(h.github("push", {}), b"not json"), 202, b"ignored\n"),
    ],
)
def test_hooks_other_events_are_2xx_and_queue_nothing(hooked: tuple[Config, ThreadedServer],
                                                      delivery: tuple[dict[str, str], bytes], status: int,
                                                      body: bytes) -> None:
    loaded, server = hooked
    reply = _post(server, delivery)
    assert (reply.status, reply.body) == (status, body)
    assert h.queued(loaded.paths.state) == []


def test_hooks_a_burst_coalesces_into_one_entry(hooked: tuple[Config, ThreadedServer]) -> None:
    loaded, server = hooked
    bodies = [_post(server, h.github("push", h.github_tag_push(f"v{n}"))).body for n in range(10)]
    assert bodies == [b"queued\n"] + [b"coalesced\n"] * 9
    assert len(h.queued(loaded.paths.state)) == 1


def test_hooks_a_replay_is_200_and_queues_nothing(hooked: tuple[Config, ThreadedServer]) -> None:
    loaded, server = hooked
    delivery = h.github("push", h.github_tag_push(), delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    assert _post(server, delivery).status == 202
    fetch_queue.claim(fetch_queue.queue_dir(loaded.paths.state))  # the fetcher took it
    replay = _post(server, delivery)
    assert (replay.status, replay.body) == (200, b"duplicate\n")
    assert h.queued(loaded.paths.state) == []


def _serve_in_child(config_path: str, url_pipe: Any, stop: Any) -> None:
    loaded = config.load(config_path)
    with ThreadedServer(make_app(loaded)) as server:
        url_pipe.send(server.url)
        stop.wait(30)


def test_hooks_a_replay_to_another_worker_process_is_a_duplicate(
        hooked: tuple[Config, ThreadedServer]) -> None:
    loaded, server = hooked
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    stop = context.Event()
    child = context.Process(target=_serve_in_child, args=(str(loaded.path), send, stop))
    child.start()
    try:
        assert receive.poll(20)
        other_url = receive.recv()
        assert child.pid != os.getpid()
        delivery = h.github("push", h.github_tag_push())
        first = request(other_url, URL, "POST", delivery[0], body=delivery[1])
        assert first.body == b"queued\n"
        fetch_queue.claim(fetch_queue.queue_dir(loaded.paths.state))
        replay = _post(server, delivery)
        assert (replay.status, replay.body) == (200, b"duplicate\n")
        assert h.queued(loaded.paths.state) == []
    finally:
        stop.set()
        child.join(20)
        if child.is_alive():
            child.kill()
            child.join(5)


def test_hooks_answer_in_milliseconds_while_a_fetch_run_holds_the_lock(
        hooked: tuple[Config, ThreadedServer]) -> None:
    loaded, server = hooked
    with exclusive_lock(loaded.paths.state / "update.lock"):
        began = time.perf_counter()
        reply = _post(server, h.github("push", h.github_tag_push()))
        took = time.perf_counter() - began
    assert reply.status == 202
    assert took < 1.0, took


def test_hooks_journal_fields_and_nothing_secret(hooked: tuple[Config, ThreadedServer],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _loaded, server = hooked
    marker = "body-marker-that-must-not-be-logged"
    payload = dict(h.github_tag_push(), marker=marker)
    accepted = h.github("push", payload, delivery="delivery-1")
    refused = h.gitlab({"object_kind": "tag_push", "after": "b" * 40, "marker": marker},
                       token="wrong-token-that-must-not-be-logged")
    _post(server, accepted)
    _post(server, refused)
    entries = [r for r in caplog.records if r.name == "pypi_insiders.web.hooks"]
    fields = [{k: getattr(r, k) for k in ("REPO", "FORGE", "EVENT", "DELIVERY", "OUTCOME")} for r in entries]
    assert fields[0] == {"REPO": KEY, "FORGE": "github", "EVENT": "push", "DELIVERY": "delivery-1",
                         "OUTCOME": "queued"}
    assert fields[1]["FORGE"] == "gitlab"
    assert fields[1]["OUTCOME"] == "refused:wrong token"
    assert len(entries) == 2
    signature = accepted[0]["X-Hub-Signature-256"]
    for record in caplog.records:
        text = record.getMessage() + repr(vars(record))
        for secret in (h.SECRET, marker, "wrong-token-that-must-not-be-logged", signature[7:]):
            assert secret not in text


def test_hooks_gitlab_signing_token_and_its_timestamp(make_config: ConfigMaker) -> None:
    """A GitLab signing token (`whsec_...`) beside the secret, as during a rotation: a fresh
    signature queues, a captured one replayed after the window is 401."""
    loaded = _config(make_config)
    token = "whsec_" + base64.b64encode(b"gitlab signing key of 32 bytes!!").decode()
    (loaded.webhooks.secrets_dir / "hook-p").write_text(f"{h.SECRET}\n{token}\n")
    body = json.dumps({"object_kind": "tag_push", "after": "b" * 40}).encode()

    def signed(stamp: int, delivery: str) -> dict[str, str]:
        key = base64.b64decode(token.removeprefix("whsec_"))
        mac = hmac.new(key, f"{delivery}.{stamp}.".encode() + body, hashlib.sha256).digest()
        return {"Content-Type": "application/json", "X-Gitlab-Event": "Tag Push Hook", "webhook-id": delivery,
                "webhook-timestamp": str(stamp), "webhook-signature": "v1," + base64.b64encode(mac).decode()}

    with ThreadedServer(make_app(loaded)) as server:
        stale = request(server.url, URL, "POST", signed(int(time.time()) - 600, "msg_old"), body=body)
        fresh = request(server.url, URL, "POST", signed(int(time.time()), "msg_new"), body=body)
    assert stale.status == 401
    assert (fresh.status, fresh.body) == (202, b"queued\n")


def _service_server(loaded: Config) -> ThreadedServer:
    """The server as the service makes it: its request parser limits bodies before the app."""
    app = make_app(loaded)
    return ThreadedServer(app, server=create_server(app, loaded))


def test_hooks_the_service_takes_a_delivery_up_to_max_body_and_refuses_more_unread(
        make_config: ConfigMaker) -> None:
    loaded = _config(make_config)
    loaded = dataclasses.replace(loaded, webhooks=dataclasses.replace(loaded.webhooks, max_body=200_000))
    large = dict(h.github_tag_push(), padding="x" * 100_000)  # past the 64 KiB of other requests
    with _service_server(loaded) as server:
        reply = _post(server, h.github("push", large))
        assert (reply.status, reply.body) == (202, b"queued\n")
        port = int(server.url.rsplit(":", 1)[1].strip("/"))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            began = time.monotonic()
            conn.sendall(f"POST {URL} HTTP/1.1\r\nHost: x\r\nContent-Length: 200001\r\n"
                         "X-GitHub-Event: push\r\n\r\n".encode())  # the body is never sent
            answer = conn.recv(200)
        assert answer.startswith(b"HTTP/1.1 413 "), answer
        assert time.monotonic() - began < 5


def test_hooks_with_webhooks_off_at_start_large_bodies_stay_refused(make_config: ConfigMaker) -> None:
    loaded = _config(make_config, enabled=False)
    with _service_server(loaded) as server:
        reply = _post(server, h.github("push", dict(h.github_tag_push(), padding="x" * 100_000)))
    assert reply.status == 413
