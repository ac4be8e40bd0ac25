"""`[server] trusted_proxy`: whose proxy headers count, and what a request without trust keeps."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from pypi_insiders.web import forwarded, sendfile
from pypi_insiders.web.forwarded import UNTRUSTED_PROXY, VIA_PROXY, Forwarding

PROXY = {"HTTP_X_FORWARDED_FOR": "203.0.113.1, 198.51.100.9", "HTTP_X_FORWARDED_PROTO": "https",
         "HTTP_X_SENDFILE_TYPE": "X-Accel-Redirect", "HTTP_FORWARDED": "for=1.2.3.4"}


def _environ(peer: str, **headers: str) -> dict[str, Any]:
    return {"REMOTE_ADDR": peer, "wsgi.url_scheme": "http", **headers}


def test_forwarded_from_the_trusted_proxy_names_the_client() -> None:
    environ = _environ("127.0.0.1", **PROXY)
    Forwarding("127.0.0.1").apply(environ)
    assert (environ["REMOTE_ADDR"], environ["wsgi.url_scheme"], environ[VIA_PROXY]) == (
        "198.51.100.9", "https", True)
    assert sendfile.wanted(environ)
    assert UNTRUSTED_PROXY not in environ


@pytest.mark.parametrize(("trusted", "peer"), [("127.0.0.1", "127.0.0.2"), ("::1", "127.0.0.1"),
                                               ("192.0.2.1", "127.0.0.1")])
def test_forwarded_from_anyone_else_is_removed(trusted: str, peer: str) -> None:
    environ = _environ(peer, **PROXY)
    Forwarding(trusted).apply(environ)
    assert environ == _environ(peer)  # the headers gone, nothing believed, nothing marked
    assert not sendfile.wanted(environ)


def test_forwarded_without_trusted_proxy_marks_the_request_and_warns_once(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=forwarded.__name__)
    forwarding = Forwarding(None)
    for _ in range(3):
        environ = _environ("127.0.0.1", HTTP_X_SENDFILE_TYPE="X-Accel-Redirect")
        forwarding.apply(environ)
        assert environ == {**_environ("127.0.0.1"), UNTRUSTED_PROXY: True}
    plain = _environ("127.0.0.1")
    forwarding.apply(plain)
    assert plain == _environ("127.0.0.1")
    [warning] = caplog.records
    assert "X-Sendfile-Type" in warning.getMessage()
    assert 'set trusted_proxy = "127.0.0.1"' in warning.getMessage()


def test_forwarded_without_trusted_proxy_is_noted_for_check_config(tmp_path: Path) -> None:
    Forwarding("127.0.0.1", tmp_path).apply(_environ("127.0.0.2", **PROXY))  # trusted_proxy set: no note
    assert forwarded.untrusted_proxy_note(tmp_path) is None
    Forwarding(None, tmp_path).apply(_environ("127.0.0.1", HTTP_X_FORWARDED_FOR="192.0.2.1"))
    note = forwarded.untrusted_proxy_note(tmp_path)
    assert note is not None
    assert "requests from 127.0.0.1 carry proxy headers (X-Forwarded-For)" in note
