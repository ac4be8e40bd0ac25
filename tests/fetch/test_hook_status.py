"""`status` and `/status` show each repository's last webhook delivery, the queue and the path unit."""

from __future__ import annotations

from pathlib import Path

import pytest

from pypi_insiders import config
from pypi_insiders.cli import main
from pypi_insiders.fetch import hook_status
from pypi_insiders.web.app import make_app
from tests.conftest import ConfigMaker
from tests.support import hook_fixtures as h
from tests.support.server_fixtures import ThreadedServer, request


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
    assert {k: last[k] for k in ("forge", "event", "delivery", "outcome")} == {
        "forge": "github", "event": "push", "delivery": "d-1", "outcome": "queued"}
    data = hook_status.collect(loaded)
    assert data["enabled"] is True
    assert [q["key"] for q in data["queue"]] == ["a/b"]

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
    assert hook_status.lines({"enabled": True, "queue": [], "path_unit": None}) == [
        "webhooks: enabled; fetch queue: empty; pypi-insiders-fetch.path: unknown (systemd not available)"]
