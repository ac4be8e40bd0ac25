"""`status` and `/status` show each repository's last webhook delivery, the queue and the path unit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pypi_insiders import config
from pypi_insiders.cli import main
from pypi_insiders.fetch import hook_status
from pypi_insiders.fetch import status as fetch_status
from pypi_insiders.status_report import Snapshot, Webhooks
from pypi_insiders.web.app import make_app
from tests.conftest import ConfigMaker
from tests.support import hook_fixtures as h
from tests.support.server_fixtures import ThreadedServer, request, wait_for


def _hooked(make_config: ConfigMaker) -> config.Config:
    loaded = config.load(str(make_config(webhooks={"enabled": True},
                                         repos={"a/b": {"url": "file:///r", "webhook_secret": "s"}})))
    loaded.webhooks.secrets_dir.mkdir()
    (loaded.webhooks.secrets_dir / "s").write_text(h.SECRET)
    (loaded.webhooks.secrets_dir / "s").chmod(0o600)
    return loaded


def test_hook_status_after_a_delivery(make_config: ConfigMaker, capsys: pytest.CaptureFixture[str]) -> None:
    loaded = _hooked(make_config)
    with ThreadedServer(make_app(loaded)) as server:
        headers, body = h.github("push", h.github_tag_push(), delivery="d-1")
        assert request(server.url, "/-/hooks/a/b", "POST", headers, body=body).status == 202
    a_b = loaded.repo("a/b")
    assert a_b is not None
    last = hook_status.last_delivery(loaded, a_b)
    assert last is not None
    assert (last.forge, last.event, last.delivery, last.outcome) == ("github", "push", "d-1", "queued")
    data = hook_status.collect(loaded)
    assert data.enabled is True
    assert [q.key for q in data.queue] == ["a/b"]

    assert main(["--config", str(loaded.path), "status"]) == 0
    out = capsys.readouterr().out
    assert "  last webhook: " in out
    assert "github push: queued" in out
    assert "webhooks: enabled; fetch queue: a/b (since " in out


def test_hook_status_says_nothing_while_off_and_empty(make_config: ConfigMaker,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = make_config(repos={"a/b": {"url": "file:///r"}})
    assert main(["--config", str(path), "status"]) == 0
    out = capsys.readouterr().out
    assert "webhook" not in out


def test_hook_status_path_unit_unknown_without_systemd(tmp_path: Path) -> None:
    assert hook_status.path_unit_state(tmp_path / "no-systemd-here") is None
    assert hook_status.lines(Webhooks(enabled=True)) == [
        "webhooks: enabled; fetch queue: empty; pypi-insiders-fetch.path: unknown (systemd not available)"]


def test_hook_status_page_shows_the_delivery_and_the_queue(make_config: ConfigMaker) -> None:
    """/status reads the delivery and the queue from the snapshot the parent writes (issue 24):
    a delivery changes the snapshot's inputs, so the refresher writes it again."""
    loaded = _hooked(make_config)
    stamp = fetch_status.input_stamp(loaded)
    fetch_status.refresh(loaded)
    with ThreadedServer(make_app(loaded, status=Snapshot.in_cache(loaded.paths.cache))) as server:
        before = json.loads(request(server.url, "/status.json").body)
        assert before["repositories"][0]["last_delivery"] is None
        assert before["webhooks"] == {"enabled": True, "queue": [], "path_unit": None}
        headers, body = h.github("push", h.github_tag_push(), delivery="d-2")
        assert request(server.url, "/-/hooks/a/b", "POST", headers, body=body).status == 202
        assert wait_for(lambda: fetch_status.input_stamp(loaded) != stamp, timeout=5)
        fetch_status.refresh(loaded)
        after = json.loads(request(server.url, "/status.json").body)
        page = request(server.url, "/status").body.decode()
    delivered = after["repositories"][0]["last_delivery"]
    assert {k: delivered[k] for k in ("forge", "event", "delivery", "outcome")} == {
        "forge": "github", "event": "push", "delivery": "d-2", "outcome": "queued"}
    assert [q["key"] for q in after["webhooks"]["queue"]] == ["a/b"]
    assert "github push: queued" in page
    assert "Webhooks enabled; fetch queue: a/b (since " in page
