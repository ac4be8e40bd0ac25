"""The legacy upload API through the real app on a loopback port: accepted uploads and every refusal.

Each refusal asserts the status and that the store holds exactly what it held before: no new
file, no temporary file left behind.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import io
import logging
import os
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import canonicalize_name

from pypi_insiders.config import Config
from pypi_insiders.state_layout import StateLayout
from pypi_insiders.store import Store
from pypi_insiders.web import passwords, scopes
from pypi_insiders.web import users as auth
from pypi_insiders.web.index_visibility import IndexView
from pypi_insiders.web.multipart import BodyReader, Parser
from pypi_insiders.web.upload import Uploads
from tests.conftest import ConfigMaker
from tests.support import upload_fixtures
from tests.support.distfiles import make_sdist, make_wheel
from tests.support.server_fixtures import basic, wait_for
from tests.support.upload_fixtures import BOUNDARY, Reply, multipart, post, running_app, tree, twine_fields

SECRET = "correct horse battery"


AUTH = basic("alice", SECRET)


@pytest.fixture
def upload_config(make_config: ConfigMaker) -> Config:
    return upload_fixtures.upload_config(make_config, SECRET)


@pytest.fixture
def port(upload_config: Config) -> Iterator[int]:
    with running_app(upload_config) as bound:
        yield bound


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    return make_wheel(tmp_path / "dist", "Demo-Pkg", "1.0")


def upload(port: int, path: Path, name: str = "Demo-Pkg", version: str = "1.0", *,
           auth_header: str | None = AUTH) -> Reply:
    data = path.read_bytes()
    body = multipart(twine_fields(path.name, data, name, version), (path.name, data))
    return post(port, body, auth=auth_header)


def test_upload_accepts_a_wheel_into_the_store(port: int, upload_config: Config, wheel: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pypi_insiders.web.upload")
    reply = upload(port, wheel)
    assert (reply.status, reply.text) == (200, f"{wheel.name}: uploaded")
    published = upload_config.paths.store / "demo-pkg" / wheel.name
    assert published.read_bytes() == wheel.read_bytes()
    assert tree(upload_config.paths.store) == [f"demo-pkg/{wheel.name}"]
    record = StateLayout(upload_config.paths.state).published_filenames.read_text().splitlines()
    assert wheel.name in record
    accepted = [r for r in caplog.records if r.levelno == logging.INFO and "alice" in r.getMessage()]
    assert accepted
    assert accepted[0].__dict__["PROJECT"] == "demo-pkg"
    assert accepted[0].__dict__["FILE"] == wheel.name
    assert accepted[0].__dict__["CLIENT"] == "127.0.0.1"
    assert SECRET not in caplog.text


def test_upload_accepts_an_sdist(port: int, upload_config: Config, tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path / "dist", "Demo-Pkg", "2.0")
    assert upload(port, sdist, version="2.0").status == 200
    assert (upload_config.paths.store / "demo-pkg" / sdist.name).read_bytes() == sdist.read_bytes()


def test_upload_a_second_sdist_of_one_release_is_refused(port: int, upload_config: Config,
                                                         tmp_path: Path) -> None:
    """`2.0.0` is release `2.0`; its sdist under another spelling would be a second one."""
    assert upload(port, make_sdist(tmp_path / "a", "Demo-Pkg", "2.0"), version="2.0").status == 200
    before = tree(upload_config.paths.store)
    reply = upload(port, make_sdist(tmp_path / "b", "Demo-Pkg", "2.0.0"), version="2.0.0")
    assert reply.status == 400
    assert "only one sdist per release" in reply.text
    assert tree(upload_config.paths.store) == before
    assert upload(port, make_sdist(tmp_path / "c", "Demo-Pkg", "2.1"), version="2.1").status == 200


def test_upload_identical_reupload_answers_200(port: int, upload_config: Config, wheel: Path) -> None:
    assert upload(port, wheel).status == 200
    before = tree(upload_config.paths.store)
    again = upload(port, wheel)
    assert again.status == 200
    assert tree(upload_config.paths.store) == before


def test_upload_different_bytes_under_an_existing_filename_is_refused(
        port: int, upload_config: Config, tmp_path: Path, wheel: Path) -> None:
    assert upload(port, wheel).status == 200
    other = make_wheel(tmp_path / "other", "Demo-Pkg", "1.0", requires=["attrs"])
    assert other.name == wheel.name
    assert other.read_bytes() != wheel.read_bytes()
    before = tree(upload_config.paths.store)
    reply = upload(port, other)
    assert reply.status == 409
    assert "different content" in reply.text
    assert tree(upload_config.paths.store) == before
    assert (upload_config.paths.store / "demo-pkg" / wheel.name).read_bytes() == wheel.read_bytes()


def test_upload_filename_is_never_reused_after_deletion(port: int, upload_config: Config,
                                                        wheel: Path) -> None:
    assert upload(port, wheel).status == 200
    (upload_config.paths.store / "demo-pkg" / wheel.name).unlink()
    index = IndexView(upload_config.paths.index)
    assert wait_for(lambda: wheel.name not in index.listed(canonicalize_name("demo-pkg")))
    before = tree(upload_config.paths.store)
    reply = upload(port, wheel)
    assert reply.status == 400
    assert "cannot be reused" in reply.text
    assert tree(upload_config.paths.store) == before


def test_upload_files_already_in_the_store_count_as_published(upload_config: Config, wheel: Path,
                                                              tmp_path: Path) -> None:
    """A file dropped in by hand and later deleted still blocks its filename."""
    by_hand = upload_config.paths.store / "by-hand" / wheel.name
    by_hand.parent.mkdir(parents=True)
    by_hand.write_bytes(wheel.read_bytes())
    uploads = Uploads(upload_config, Store.for_config(upload_config))
    assert uploads.store.was_published(wheel.name)
    by_hand.unlink()
    with running_app(upload_config) as bound:
        reply = upload(bound, wheel)
    assert reply.status == 400
    assert tree(upload_config.paths.store) == []


def test_upload_missing_credentials_answer_401_with_a_challenge(port: int, upload_config: Config,
                                                                wheel: Path) -> None:
    reply = upload(port, wheel, auth_header=None)
    assert reply.status == 401
    assert reply.headers.get("www-authenticate", "").startswith("Basic")
    assert tree(upload_config.paths.store) == []


@pytest.mark.parametrize("refusal", [
    (basic("alice", "wrong secret"), 403),
    (basic("mallory", SECRET), 403),
    (basic("__token__", SECRET), 403),
    ("Basic !!!not-base64!!!", 401),
    ("Bearer abc", 401),
    ("Basic " + base64.b64encode(b"no-colon").decode(), 401),
])
def test_upload_wrong_credentials_are_refused(port: int, upload_config: Config, wheel: Path,
                                              refusal: tuple[str, int],
                                              caplog: pytest.LogCaptureFixture) -> None:
    header, status = refusal
    reply = upload(port, wheel, auth_header=header)
    assert reply.status == status
    assert tree(upload_config.paths.store) == []
    assert SECRET not in caplog.text
    assert "127.0.0.1" in caplog.text


def test_upload_a_token_sent_as_the_user_name_is_not_logged(port: int, upload_config: Config, wheel: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """twine's fields swapped: the token arrives as the user name, and must not reach the log."""
    caplog.set_level(logging.INFO)
    token = passwords.make_token("al")  # a short name: a token that looks like a user name
    assert passwords.NAME.fullmatch(token)
    reply = upload(port, wheel, auth_header=basic(token, "__token__"))
    assert reply.status == 403
    assert "invalid credentials for an unknown user" in caplog.text
    assert token not in caplog.text
    assert token not in reply.text


def test_upload_without_users_file_refuses_everyone(port: int, upload_config: Config, wheel: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    upload_config.upload.users_file.unlink()
    reply = upload(port, wheel)
    assert reply.status == 403
    assert "no users" in caplog.text
    assert tree(upload_config.paths.store) == []


def test_upload_accepts_an_api_token_with_the_token_user_name(port: int, upload_config: Config,
                                                              wheel: Path) -> None:
    token = passwords.make_token("ci-bot")
    with upload_config.upload.users_file.open("a") as users:
        users.write(f"ci-bot:{passwords.hash_secret(token)}\n")
    assert upload(port, wheel, auth_header=basic("__token__", token)).status == 200


@pytest.mark.parametrize(("upload_scope", "status"), [("", 403), ("other-pkg", 403), ("Demo_Pkg", 200),
                                                    ("*", 200)])
def test_upload_needs_an_upload_scope_covering_the_project(port: int, upload_config: Config, wheel: Path,
                                                           upload_scope: str, status: int) -> None:
    token = passwords.make_token("ci-bot")
    user = auth.User("ci-bot", passwords.hash_secret(token), read=scopes.EVERYTHING,
                     upload=scopes.parse_scope(upload_scope), token=True)
    with upload_config.upload.users_file.open("a") as users:
        users.write(user.line() + "\n")
    reply = upload(port, wheel, auth_header=basic("__token__", token))
    assert reply.status == status, reply
    if status == 403:
        assert reply.text.strip() == "user 'ci-bot' may not upload to demo-pkg"
        assert tree(upload_config.paths.store) == []  # not even the spooled upload is left
        record = StateLayout(upload_config.paths.state).published_filenames
        assert not record.exists() or wheel.name not in record.read_text()
    else:
        assert tree(upload_config.paths.store) == [f"demo-pkg/{wheel.name}"]


@pytest.mark.parametrize("filename", [
    "../demo_pkg-1.0-py3-none-any.whl",
    "sub/demo_pkg-1.0-py3-none-any.whl",
    "sub\\\\demo_pkg-1.0-py3-none-any.whl",
    "/tmp/demo_pkg-1.0-py3-none-any.whl",
    "demo_pkg-1.0-py3-none-any.whl\x00.txt",
    "..",
    "",
    "demo_pkg-1.0.exe",
    "demo_pkg-1.0-py3-none-any.whl.part",
    "demo-pkg.whl",
    ".demo_pkg-1.0-py3-none-any.whl",
])
def test_upload_bad_filenames_are_refused(port: int, upload_config: Config, wheel: Path,
                                          filename: str) -> None:
    data = wheel.read_bytes()
    body = multipart(twine_fields(wheel.name, data, "Demo-Pkg", "1.0"), (filename, data))
    reply = post(port, body, auth=AUTH)
    assert reply.status == 400, reply.text
    assert tree(upload_config.paths.store) == []


def _forged(tmp_path: Path, **changes: Any) -> tuple[str, bytes, list[tuple[str, str]]]:
    """A wheel and its form, with either the archive forged (make_wheel args) or form fields changed."""
    form_changes = {k: v for k, v in changes.items() if k in ("name", "version", "filetype")}
    wheel_args = {k: v for k, v in changes.items() if k not in form_changes}
    path = make_wheel(tmp_path / "forged", "Demo-Pkg", "1.0", **wheel_args)
    data = path.read_bytes()
    fields = twine_fields(path.name, data, "Demo-Pkg", "1.0")
    fields = [(k, form_changes.get(k, v)) for k, v in fields]
    return path.name, data, fields


@pytest.mark.parametrize(("changes", "expected"), [
    ({"name": "other-project"}, "declared project"),
    ({"version": "1.1"}, "not version 1.1"),
    ({"version": "not a version"}, "not a PEP 440"),
    ({"filetype": "sdist"}, "declared filetype"),
    ({"metadata_name": "Other-Project"}, "metadata names project"),
    ({"metadata_version": "9.9"}, "metadata says version"),
])
def test_upload_content_not_matching_its_declared_name_or_version_is_refused(
        port: int, upload_config: Config, tmp_path: Path, changes: dict[str, str], expected: str) -> None:
    filename, data, fields = _forged(tmp_path, **changes)
    reply = post(port, multipart(fields, (filename, data)), auth=AUTH)
    assert reply.status == 400
    assert expected in reply.text
    assert tree(upload_config.paths.store) == []


@pytest.mark.parametrize("digest", ["sha256_digest", "md5_digest", "blake2_256_digest"])
def test_upload_digest_mismatch_is_refused(port: int, upload_config: Config, wheel: Path,
                                           digest: str) -> None:
    data = wheel.read_bytes()
    fields = [(k, "0" * len(v) if k == digest else v)
              for k, v in twine_fields(wheel.name, data, "Demo-Pkg", "1.0")]
    reply = post(port, multipart(fields, (wheel.name, data)), auth=AUTH)
    assert reply.status == 400
    assert digest in reply.text
    assert tree(upload_config.paths.store) == []


def test_upload_without_any_digest_is_refused(port: int, upload_config: Config, wheel: Path) -> None:
    data = wheel.read_bytes()
    fields = [(k, v) for k, v in twine_fields(wheel.name, data, "Demo-Pkg", "1.0")
              if not k.endswith("_digest")]
    assert post(port, multipart(fields, (wheel.name, data)), auth=AUTH).status == 400
    assert tree(upload_config.paths.store) == []


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_upload_truncated_archive_is_refused(port: int, upload_config: Config, tmp_path: Path,
                                             kind: str) -> None:
    """Cut in half, with digests of the cut bytes: only the archive check can catch it."""
    made = (make_wheel if kind == "wheel" else make_sdist)(tmp_path / "dist", "Demo-Pkg", "1.0")
    data = made.read_bytes()[: made.stat().st_size // 2]
    reply = post(port, multipart(twine_fields(made.name, data, "Demo-Pkg", "1.0"), (made.name, data)),
                 auth=AUTH)
    assert reply.status == 400
    assert "broken archive" in reply.text or "PKG-INFO" in reply.text
    assert tree(upload_config.paths.store) == []


def test_upload_body_shorter_than_content_length_is_refused(upload_config: Config, wheel: Path) -> None:
    """The WSGI server may hand over a short body; the handler must not take it for a whole one."""
    data = wheel.read_bytes()
    body = multipart(twine_fields(wheel.name, data, "Demo-Pkg", "1.0"), (wheel.name, data))
    environ = {"REQUEST_METHOD": "POST", "REMOTE_ADDR": "127.0.0.1", "HTTP_AUTHORIZATION": AUTH,
               "CONTENT_TYPE": f"multipart/form-data; boundary={BOUNDARY}",
               "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body[: len(body) // 2])}
    reply = Uploads(upload_config, Store.for_config(upload_config)).handle(environ)
    status, message = reply.code, reply.text
    assert status == 400
    assert "before its Content-Length" in message
    assert tree(upload_config.paths.store) == []


def test_upload_oversized_content_length_is_refused_before_the_body(port: int,
                                                                    upload_config: Config) -> None:
    """Only headers are sent: the answer must come without the server waiting for 50 MB."""
    assert upload_fixtures.post_headers_only(port, 50 * 1024 * 1024, auth=AUTH) == 413
    assert tree(upload_config.paths.store) == []


def test_upload_handler_refuses_an_oversized_content_length_without_reading(upload_config: Config) -> None:
    """Behind a server that streams the body, the handler itself answers 413 before reading it."""
    environ = {"REQUEST_METHOD": "POST", "REMOTE_ADDR": "127.0.0.1", "HTTP_AUTHORIZATION": AUTH,
               "CONTENT_TYPE": f"multipart/form-data; boundary={BOUNDARY}",
               "CONTENT_LENGTH": str(50 * 1024 * 1024), "wsgi.input": io.BytesIO(b"")}
    reply = Uploads(upload_config, Store.for_config(upload_config)).handle(environ)
    status, message = reply.code, reply.text
    assert status == 413
    assert "exceeds the upload limit" in message
    assert tree(upload_config.paths.store) == []


def test_upload_without_a_watcher_is_stored_and_answered_200_after_the_wait(
        upload_config: Config, wheel: Path, caplog: pytest.LogCaptureFixture) -> None:
    """No index service publishes it: the file is stored for good, so still 200, and a warning."""
    data = wheel.read_bytes()
    body = multipart(twine_fields(wheel.name, data, "Demo-Pkg", "1.0"), (wheel.name, data))
    environ = {"REQUEST_METHOD": "POST", "REMOTE_ADDR": "127.0.0.1", "HTTP_AUTHORIZATION": AUTH,
               "CONTENT_TYPE": f"multipart/form-data; boundary={BOUNDARY}",
               "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}
    uploads = Uploads(upload_config, Store.for_config(upload_config))
    uploads.wait = 0.3
    with caplog.at_level(logging.WARNING):
        reply = uploads.handle(environ)
    status, message = reply.code, reply.text
    assert (status, message) == (200, f"{wheel.name}: uploaded (not yet listed by the index after 0.3 s)")
    assert f"{wheel.name} is stored but not yet listed by the index" in caplog.text
    assert tree(upload_config.paths.store) == [f"demo-pkg/{wheel.name}"]


def test_upload_oversized_file_is_refused_while_streaming(port: int, upload_config: Config,
                                                          tmp_path: Path) -> None:
    """A body within the request limit whose file part is over max_size (1 MiB here)."""
    data = b"x" * (upload_config.upload.max_size + 100 * 1024)
    name = "demo_pkg-1.0-py3-none-any.whl"
    reply = post(port, multipart(twine_fields(name, data, "Demo-Pkg", "1.0"), (name, data)), auth=AUTH)
    assert reply.status == 413
    assert tree(upload_config.paths.store) == []


@pytest.mark.parametrize(("content_type", "mangle"), [
    ("application/x-www-form-urlencoded", None),
    ("multipart/form-data", None),
    (f"multipart/form-data; boundary={BOUNDARY}", lambda b: b[: len(b) - 200]),
    (f"multipart/form-data; boundary={BOUNDARY}", lambda b: b.replace(b"--\r\n", b"\r\n")),
    (f"multipart/form-data; boundary={BOUNDARY}", lambda b: b"garbage without any boundary" * 10),
    (f"multipart/form-data; boundary={BOUNDARY}", lambda b: b.replace(b"Content-Disposition", b"X-Junk")),
    (f"multipart/form-data; boundary={BOUNDARY}", lambda b: b.replace(b"\r\n\r\n", b"\r\n", 1)),
    (f"multipart/form-data; boundary={BOUNDARY}",
     lambda b: b.replace(f"--{BOUNDARY}\r\n".encode(), f"--{BOUNDARY}junk".encode(), 1)),
])
def test_upload_malformed_multipart_body_is_refused(port: int, upload_config: Config, wheel: Path,
                                                    content_type: str, mangle: Any) -> None:
    data = wheel.read_bytes()
    body = multipart(twine_fields(wheel.name, data, "Demo-Pkg", "1.0"), (wheel.name, data))
    reply = post(port, mangle(body) if mangle else body, auth=AUTH, content_type=content_type)
    assert reply.status == 400, reply.text
    assert tree(upload_config.paths.store) == []


@pytest.mark.parametrize(("fields", "file_field"), [
    ([], "content"),
    ([(":action", "remove_pkg")], "content"),
    ([(":action", "file_upload")], "not_content"),
])
def test_upload_form_without_action_or_file_is_refused(port: int, upload_config: Config, wheel: Path,
                                                       fields: list[tuple[str, str]],
                                                       file_field: str) -> None:
    data = wheel.read_bytes()
    base = [f for f in twine_fields(wheel.name, data, "Demo-Pkg", "1.0") if f[0] != ":action"]
    body = multipart([*fields, *base], (wheel.name, data), file_field=file_field)
    assert post(port, body, auth=AUTH).status == 400
    assert tree(upload_config.paths.store) == []


def test_upload_empty_file_is_refused(port: int, upload_config: Config) -> None:
    name = "demo_pkg-1.0-py3-none-any.whl"
    reply = post(port, multipart(twine_fields(name, b"", "Demo-Pkg", "1.0"), (name, b"")), auth=AUTH)
    assert reply.status == 400
    assert tree(upload_config.paths.store) == []


def test_upload_store_write_failure_is_a_500_and_leaves_nothing(port: int, upload_config: Config,
                                                                wheel: Path) -> None:
    """The project directory cannot be made (a file is in the way): a clear 500, no stray file."""
    (upload_config.paths.store / "demo-pkg").write_bytes(b"in the way")
    reply = upload(port, wheel)
    assert reply.status == 500
    assert "cannot write" in reply.text
    assert tree(upload_config.paths.store) == ["demo-pkg"]


class _Trickle(io.BytesIO):
    """A client that sends a few bytes at a time, as a slow link does."""

    def read(self, size: int | None = -1) -> bytes:
        return super().read(min(7, size if size is not None and size >= 0 else 7))


@pytest.mark.parametrize("stream", [io.BytesIO, _Trickle])
@pytest.mark.parametrize("size", [0, 1, 65536 - 40, 65536 - 17, 65536, 65536 + 3, 3 * 65536 + 11])
def test_multipart_file_with_boundary_like_bytes_survives_chunk_edges(tmp_path: Path, size: int,
                                                                      stream: type[io.BytesIO]) -> None:
    """The delimiter's near misses inside the file, and the real one straddling a read boundary."""
    near_miss = f"\r\n--{BOUNDARY[:-1]}X\r\n--".encode()
    data = (near_miss * (size // len(near_miss) + 1))[:size]
    body = multipart([("name", "Demo-Pkg"), ("name", "second value")], ("demo_pkg-1.0.tar.gz", data))
    parser = Parser(BodyReader(stream(body), len(body)), BOUNDARY.encode(), spool_dir=tmp_path,
                    max_file=10 * 65536, max_fields=1024, check_filename=lambda _name: None)
    form = parser.parse()
    assert form.file is not None
    assert form.file.path.read_bytes() == data
    assert form.file.size == size
    assert form.file.digests["sha256_digest"] == hashlib.sha256(data).hexdigest()
    assert form.fields["name"] == ["Demo-Pkg", "second value"]
    form.discard()
    assert list(tmp_path.iterdir()) == []


def test_upload_concurrent_uploads_of_one_filename_publish_one_file(port: int, upload_config: Config,
                                                                    tmp_path: Path) -> None:
    """Same bytes from several clients: all fine. Other bytes racing in: refused, never mixed."""
    first = make_wheel(tmp_path / "a", "Demo-Pkg", "1.0")
    second = make_wheel(tmp_path / "b", "Demo-Pkg", "1.0", requires=["attrs"])
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda path: upload(port, path), [first] * 4 + [second] * 4))
    statuses = sorted(reply.status for reply in replies)
    assert set(statuses) <= {200, 409}
    assert statuses.count(409) == 4  # the four uploads whose bytes lost the race
    published = (upload_config.paths.store / "demo-pkg" / first.name).read_bytes()
    winner = first if published == first.read_bytes() else second
    assert published == winner.read_bytes()
    assert tree(upload_config.paths.store) == [f"demo-pkg/{first.name}"]


def test_upload_failed_logins_are_throttled_per_client_address(upload_config: Config) -> None:
    uploads = Uploads(upload_config, Store.for_config(upload_config))

    def attempt(client: str, secret: str) -> tuple[int, str]:
        reply = uploads.handle({"REQUEST_METHOD": "POST", "REMOTE_ADDR": client, "CONTENT_LENGTH": "0",
                                "HTTP_AUTHORIZATION": basic("alice", secret), "wsgi.input": io.BytesIO()})
        return reply.code, reply.text

    assert [attempt("192.0.2.1", f"guess-{n}")[0] for n in range(10)] == [403] * 10
    status, message = attempt("192.0.2.1", SECRET)  # even the right secret waits: no oracle
    assert status == 429
    assert "retry in" in message
    assert attempt("192.0.2.2", SECRET)[0] == 400  # another address logs in (then sends no form)


def _sdist_with_payload(directory: Path, payload: bytes) -> Path:
    """An sdist whose PKG-INFO comes first and a large member after it, as real sdists are laid out."""
    path = make_sdist(directory, "Demo-Pkg", "1.0")
    with tarfile.open(path) as original:
        members = [(m, original.extractfile(m).read()) for m in original if m.isfile()]  # type: ignore[union-attr]
    with tarfile.open(path, "w:gz") as archive:
        for member, data in members:
            archive.addfile(member, io.BytesIO(data))
        info = tarfile.TarInfo("demo_pkg-1.0/payload.bin")
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    return path


def test_upload_sdist_cut_after_its_metadata_is_refused(port: int, upload_config: Config,
                                                        tmp_path: Path) -> None:
    """PKG-INFO still reads from the first bytes; only reading the whole archive finds the cut."""
    sdist = _sdist_with_payload(tmp_path / "dist", os.urandom(600 * 1024))
    data = sdist.read_bytes()[: int(sdist.stat().st_size * 0.7)]
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as cut:  # the premise: metadata survives
        assert cut.next() is not None
    reply = post(port, multipart(twine_fields(sdist.name, data, "Demo-Pkg", "1.0"), (sdist.name, data)),
                 auth=AUTH)
    assert reply.status == 400
    assert "broken archive" in reply.text
    assert tree(upload_config.paths.store) == []


def test_upload_wheel_with_a_corrupt_member_is_refused(port: int, upload_config: Config,
                                                       tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "dist", "Demo-Pkg", "1.0")
    with zipfile.ZipFile(wheel, "a", zipfile.ZIP_STORED) as archive:
        archive.writestr("demo_pkg/data.bin", b"A" * 4096)
    data = bytearray(wheel.read_bytes())
    offset = bytes(data).index(b"A" * 4096) + 2048
    data[offset] ^= 0xFF
    corrupt = bytes(data)
    reply = post(port, multipart(twine_fields(wheel.name, corrupt, "Demo-Pkg", "1.0"), (wheel.name, corrupt)),
                 auth=AUTH)
    assert reply.status == 400
    assert "demo_pkg/data.bin is corrupt" in reply.text
    assert tree(upload_config.paths.store) == []


def test_upload_refuses_a_store_without_its_filename_registry(upload_config: Config) -> None:
    """A bare Store would publish without recording names: a deleted file's name could come back."""
    with pytest.raises(ValueError, match="filename registry"):
        Uploads(upload_config, Store(upload_config.paths.store))
