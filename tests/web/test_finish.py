"""The one finishing step (`web/finish.py`) on its own: the 304, HEAD, the body; and whom an
answer is for, which the Response settles when it is made (`web/response.py`). The app's own
tests hold the same rules over HTTP; these pin them for any route, including one not written yet.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import NormalizedName

from pypi_insiders.web.finish import LARGE_BODY, finish, validators
from pypi_insiders.web.response import FileBody, Headers, Response, one_caller, outcome, plain

ETAG = '"abc"'
MTIME = 1_700_000_000
DEMO = NormalizedName("demo")
PAGE: Headers = [("Content-Type", "text/html"), ("Content-Length", "5"), ("Content-Encoding", "gzip"),
                 *validators(ETAG, MTIME, "max-age=30, public"), ("Vary", "Accept")]


def _page(**facts: Any) -> Response:
    return Response("200 OK", PAGE, b"hello", etag=ETAG, mtime=MTIME, **facts)


def _get(**headers: str) -> dict[str, Any]:
    return {"REQUEST_METHOD": "GET", **{f"HTTP_{k.upper()}": v for k, v in headers.items()}}


def _joined(body: Iterable[bytes]) -> bytes:
    out = b"".join(body)
    close = getattr(body, "close", None)
    if close is not None:
        close()
    return out


@pytest.mark.parametrize(("given", "private", "expected"), [
    # a page: public becomes private, Authorization joins Vary
    ([("Cache-Control", "max-age=30, public"), ("Vary", "Accept")], True,
     [("Cache-Control", "max-age=30, private"), ("Vary", "Accept, Authorization")]),
    # a file: no Vary yet, so one is added
    ([("Cache-Control", "max-age=31536000, public, immutable")], True,
     [("Cache-Control", "max-age=31536000, private, immutable"), ("Vary", "Authorization")]),
    # neither public nor private: private comes first
    ([("Cache-Control", "no-cache")], True,
     [("Cache-Control", "private, no-cache"), ("Vary", "Authorization")]),
    # already private and varied: unchanged (applying it twice changes nothing)
    ([("Cache-Control", "private, max-age=30"), ("Vary", "Accept, Authorization")], True,
     [("Cache-Control", "private, max-age=30"), ("Vary", "Accept, Authorization")]),
    # only varying by caller (upstream's page for a non-reader): Cache-Control stays public
    ([("Cache-Control", "max-age=60, public"), ("Vary", "Accept")], False,
     [("Cache-Control", "max-age=60, public"), ("Vary", "Accept, Authorization")]),
])
def test_response_one_caller_headers(given: Headers, private: bool, expected: Headers) -> None:
    assert one_caller(given, private=private) == expected


def test_finish_public_answer_is_sent_as_it_is() -> None:
    page = _page()
    sent, body = finish(_get(), page)
    assert sent is page  # nothing made per request for a public page
    assert _joined(body) == b"hello"


def test_response_private_answer_says_so_and_keeps_its_facts() -> None:
    sent, _body = finish(_get(), _page(private=True, project="demo"))
    assert dict(sent.headers)["Cache-Control"] == "max-age=30, private"
    assert dict(sent.headers)["Vary"] == "Accept, Authorization"
    assert sent.project == "demo"
    assert PAGE[3:6] == validators(ETAG, MTIME, "max-age=30, public")  # the shared list is untouched
    assert PAGE[6] == ("Vary", "Accept")


@pytest.mark.parametrize("condition", [
    {"if_none_match": ETAG}, {"if_none_match": f'"other", W/{ETAG}'}, {"if_none_match": "*"},
    {"if_modified_since": formatdate(MTIME, usegmt=True)},
])
def test_finish_current_copy_is_a_304_with_only_the_validators(condition: dict[str, str]) -> None:
    sent, body = finish(_get(**condition), _page(private=True, project="demo"))
    assert sent.status == "304 Not Modified"
    assert [k for k, _v in sent.headers] == ["ETag", "Last-Modified", "Cache-Control", "Vary"]
    assert dict(sent.headers)["Vary"] == "Accept, Authorization"
    assert sent.project == "demo"  # still logged as a read of the project
    assert _joined(body) == b""


@pytest.mark.parametrize("condition", [
    {"if_none_match": '"other"'},
    {"if_none_match": '"other"', "if_modified_since": formatdate(MTIME, usegmt=True)},  # tags decide
    {"if_modified_since": formatdate(MTIME - 1, usegmt=True)}, {"if_modified_since": "not a date"},
])
def test_finish_stale_or_unreadable_condition_is_a_200(condition: dict[str, str]) -> None:
    sent, body = finish(_get(**condition), _page())
    assert (sent.status, _joined(body)) == ("200 OK", b"hello")


def test_finish_answer_without_a_tag_is_never_a_304() -> None:
    refusal = plain("404 Not Found", "no such file")
    sent, _body = finish(_get(if_none_match="*"), refusal)
    assert sent.status == "404 Not Found"


def test_finish_head_has_the_headers_of_get_and_never_opens_the_file(tmp_path: Path) -> None:
    missing = FileBody(str(tmp_path / "gone.whl"), 10)
    answer = Response("200 OK", [("Content-Length", "10")], missing)
    sent, body = finish({"REQUEST_METHOD": "HEAD"}, answer)
    assert (sent.status, sent.headers, _joined(body)) == (
        "200 OK", [("Content-Length", "10"), ("Accept-Ranges", "bytes")], b"")


def test_finish_head_closes_a_streamed_body() -> None:
    stream = io.BytesIO(b"data")
    sent, body = finish({"REQUEST_METHOD": "HEAD"}, Response("200 OK", [], stream))
    assert (sent.status, _joined(body)) == ("200 OK", b"")
    assert stream.closed


def test_finish_304_closes_a_streamed_body() -> None:
    stream = io.BytesIO(b"data")
    sent, body = finish(_get(if_none_match=ETAG), Response("200 OK", PAGE, stream, etag=ETAG, mtime=MTIME))
    assert (sent.status, _joined(body)) == ("304 Not Modified", b"")
    assert stream.closed


def test_finish_file_is_streamed(tmp_path: Path) -> None:
    path = tmp_path / "demo.whl"
    path.write_bytes(b"x" * 1000)
    sent, body = finish(_get(), Response("200 OK", [], FileBody(str(path), 1000), file="demo/demo.whl"))
    assert (sent.status, _joined(body)) == ("200 OK", b"x" * 1000)


def test_finish_file_deleted_after_routing_is_a_404_still_logged(tmp_path: Path) -> None:
    answer = Response("200 OK", [("Content-Length", "10")], FileBody(str(tmp_path / "gone.whl"), 10),
                      etag=ETAG, private=True, project=DEMO, file="demo/gone.whl")
    sent, body = finish(_get(if_none_match='"other"'), answer)
    assert sent.status == "404 Not Found"
    assert ("Cache-Control", "private, max-age=30") not in sent.headers
    assert (sent.project, sent.file, sent.etag) == ("demo", "demo/gone.whl", "")
    assert _joined(body) == b"no such file\n"


def test_finish_large_body_goes_through_the_servers_file_wrapper() -> None:
    wrapped: list[int] = []

    def wrapper(stream: io.BytesIO, size: int) -> Iterable[bytes]:
        wrapped.append(size)
        return iter(lambda: stream.read(size), b"")

    large = b"y" * LARGE_BODY
    _sent, body = finish({**_get(), "wsgi.file_wrapper": wrapper}, Response("200 OK", [], large))
    assert _joined(body) == large
    assert wrapped
    _sent, small = finish({**_get(), "wsgi.file_wrapper": wrapper}, Response("200 OK", [], b"small"))
    assert small == (b"small",)


@pytest.mark.parametrize(("code", "message", "status", "challenge"), [
    (200, "demo-1.0.tar.gz: uploaded", "200 OK", False),
    (401, "credentials required", "401 credentials required", True),
    (403, "user 'ci' may not upload to demo", "403 user 'ci' may not upload to demo", False),
    (400, "bad\nname \x00 here", "400 bad name here", False),
])
def test_response_outcome_puts_the_reason_in_the_status_line(code: int, message: str, status: str,
                                                             challenge: bool) -> None:
    answer = outcome(code, message)
    assert (answer.status, answer.code, answer.text) == (status, code, message)
    assert ("WWW-Authenticate" in dict(answer.headers)) is challenge
