"""Properties that hold for any input, checked with hypothesis against the real server on loopback.

Random request paths (percent-encodings included), query strings, methods and Accept,
Accept-Encoding, Authorization and conditional headers; random multipart upload bodies and
filenames; random config files. Whatever arrives: no 5xx, no traceback in the log, nothing
written to the store by a refused upload, every 200 page well-formed HTML or JSON, and a config
file is either a Config or one ConfigError naming the file.

The fast tier runs a bounded number of examples per property; `HYPOTHESIS_PROFILE=long` runs
many more (README, Development).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import json
import logging
import os
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pypi_insiders import config, directories
from pypi_insiders.errors import ConfigError
from pypi_insiders.service.server import create_server
from pypi_insiders.web.app import make_app
from tests.conftest import to_toml
from tests.support.distfiles import make_wheel
from tests.support.server_fixtures import FakeUpstream, ThreadedServer
from tests.support.upload_fixtures import indexing, multipart, tree, twine_fields

settings.register_profile("fast", max_examples=150)
settings.register_profile("long", max_examples=3000)
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))
# database=None: no .hypothesis directory in the source tree (the Debian build runs these too);
# a failure prints the example and a blob to reproduce it with @reproduce_failure.
properties = settings(PROFILE, deadline=None, database=None, print_blob=True,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

WHEEL = "demo_pkg-1.0-py3-none-any.whl"
USER, SECRET = "alice", "pw"
HTML_TYPES = ("text/html", "application/vnd.pypi.simple.v1+html")
JSON_TYPES = ("application/vnd.pypi.simple.v1+json", "application/json")


class LogWatch(logging.Handler):
    """Every record logged with a traceback (waitress logs a 500's so), from any logger."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.tracebacks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or "Traceback" in record.getMessage():
            self.tracebacks.append(self.format(record))


@dataclass
class Index:
    port: int
    config: config.Config = field(repr=False)
    wheels: dict[str, bytes] = field(repr=False)  # filename -> bytes: one in the store, one not yet
    log: LogWatch = field(repr=False)

    def send(self, method: str, target: str, headers: dict[str, str],
             body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, target, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()


def _users_line() -> str:
    """A cheap scrypt entry (ln=4) in the users file's documented format: examples stay fast."""
    salt = b"0123456789abcdef"
    key = hashlib.scrypt(SECRET.encode(), salt=salt, n=1 << 4, r=8, p=1, dklen=32)
    return f"{USER}:$scrypt$ln=4,r=8,p=1${_b64(salt)}${_b64(key)}\n"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    """The service's server over a generated index, uploads on, the proxy in front of a fake upstream."""
    root = tmp_path_factory.mktemp("properties")
    fake = FakeUpstream(projects={"remote-only": {"remote_only-1.0-py3-none-any.whl": b"wheel"}})
    with ThreadedServer(fake.app) as upstream:
        (root / "config.toml").write_text(to_toml({
            "server": {"listen": "127.0.0.1:0"},
            "paths": {"data": str(root / "data"), "cache": str(root / "cache")},
            "upstream": {"url": upstream.url + "simple/", "fallback": "proxy", "timeout": 5.0},
            "upload": {"enabled": True, "users_file": str(root / "users"), "max_size_mb": 1},
            "fetch": {"repos_dir": str(root / "repos.d"), "credentials_dir": str(root / "credentials")}}))
        loaded = config.load(str(root / "config.toml"))
        directories.prepare(loaded, create=True)
        loaded.upload.users_file.write_text(_users_line())
        held = make_wheel(loaded.paths.store / "demo-pkg", "demo-pkg", "1.0")
        new = make_wheel(root / "dist", "demo-pkg", "2.0")
        watch = LogWatch()
        logging.getLogger().addHandler(watch)
        app = make_app(loaded)
        try:  # the watcher publishes an upload, which is answered once the index lists it
            with indexing(loaded), ThreadedServer(app, server=create_server(app, loaded)) as server:
                wheels = {path.name: path.read_bytes() for path in (held, new)}
                yield Index(int(server.server.effective_port), loaded, wheels, watch)
        finally:
            logging.getLogger().removeHandler(watch)


# --------------------------------------------------------------------------- strategies

_SAFE = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@"
_piece = st.one_of(st.sampled_from(list(_SAFE + "/")),
                   st.integers(0, 255).map(lambda b: f"%{b:02X}"),
                   st.sampled_from(["..", "%2e%2e", "%2f", "%00", "demo-pkg", "Demo_Pkg", WHEEL, ".metadata",
                                    "index.html", "index.json", "a" * 300]))
_tail = st.lists(_piece, max_size=12).map("".join)
_prefix = st.sampled_from(["/", "/simple", "/simple/", "/simple/demo-pkg/", "/simple/remote-only/",
                           "/packages/", "/packages/demo-pkg/", f"/packages/demo-pkg/{WHEEL}",
                           f"/packages/demo-pkg/{WHEEL}.metadata", "/status", "/status.json", "/legacy/"])
_query = st.one_of(st.just(""), st.sampled_from(["format=json", "format=html", "format=text/html",
                                                 "format=application/vnd.pypi.simple.v1+json"]),
                   st.text(_SAFE + "=&?%/", max_size=40))
_header_text = st.text(string.printable.strip() + " ", max_size=60).map(str.strip)
_accept = st.one_of(st.sampled_from(["", "*/*", "text/html", "application/vnd.pypi.simple.v1+json",
                                     "application/vnd.pypi.simple.latest+json;q=0.9, text/html;q=0.1",
                                     "application/vnd.pypi.simple.v1+html;q=0", "text/*;q=0.5",
                                     "image/png", "text/html;q=abc", ";;,,"]), _header_text)
_accept_encoding = st.one_of(st.sampled_from(["", "gzip", "gzip;q=0", "identity;q=0", "*", "br, gzip;q=0.1",
                                              "x-gzip", "gzip;q=1.5"]), _header_text)
_authorization = st.one_of(st.just(""), _header_text,
                           st.binary(max_size=40).map(lambda b: "Basic " + base64.b64encode(b).decode()),
                           st.just("Basic " + base64.b64encode(f"{USER}:{SECRET}".encode()).decode()))
_conditional = st.one_of(st.just({}), st.builds(lambda v: {"If-None-Match": v}, _header_text),
                         st.builds(lambda v: {"If-Modified-Since": v},
                                   st.one_of(_header_text, st.just("Thu, 01 Jan 2099 00:00:00 GMT"))))


_name = st.one_of(st.sampled_from(["demo-pkg", "Demo_Pkg", "demo.pkg", "remote-only", "-x-"]),
                  st.integers(250, 320).map("a".__mul__),  # around the file system's 255 bytes
                  st.text(string.ascii_letters + string.digits + "-._", min_size=1, max_size=300))
_structured = st.one_of(
    st.builds("/simple/{}/".format, _name),
    st.builds("/simple/{}".format, _name),
    st.builds("/packages/{}/{}".format, _name,
              st.one_of(_name, st.builds("{}-1.0-py3-none-any.whl".format, _name))),
    st.builds("/packages/demo-pkg/{}{}".format, _name,
              st.sampled_from([".whl", ".tar.gz", ".whl.metadata", ""])))


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, dict[str, str]]:
    target = draw(st.one_of(st.builds(str.__add__, _prefix, _tail), _structured))
    query = draw(_query)
    headers = {name: value for name, value in (("Accept", draw(_accept)),
                                               ("Accept-Encoding", draw(_accept_encoding)),
                                               ("Authorization", draw(_authorization))) if value}
    headers.update(draw(_conditional))
    method = draw(st.sampled_from(["GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"]))
    return method, target + (f"?{query}" if query else ""), headers


# --------------------------------------------------------------------------- well-formedness

_VOID = frozenset({"meta", "br", "link", "img", "input", "hr", "base"})


class _Balance(HTMLParser):
    """Every element closed, in order: what a page generated or relayed by us always is."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open.pop() != tag:
            self.errors.append(f"</{tag}> closes nothing open")


def check_well_formed(headers: dict[str, str], body: bytes) -> None:
    if headers.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    media = headers.get("content-type", "").split(";")[0].strip()
    if media in HTML_TYPES:
        parser = _Balance()
        parser.feed(body.decode("utf-8"))
        parser.close()
        assert not parser.errors, parser.errors
        assert not parser.open, parser.open
    elif media in JSON_TYPES:
        assert isinstance(json.loads(body), dict)
    else:
        assert media in ("text/plain", "application/octet-stream"), media  # reasons; files


def check_answer(index: Index, method: str, answer: tuple[int, dict[str, str], bytes]) -> None:
    status, headers, body = answer
    assert status < 500, (status, body[:200])
    assert not index.log.tracebacks, index.log.tracebacks
    if method == "GET" and status != 304:
        assert headers.get("content-length") == str(len(body))
    if method == "GET" and status == 200:
        check_well_formed(headers, body)
    if method == "HEAD":
        assert body == b""


# --------------------------------------------------------------------------- properties


@properties
@given(request=requests())
def test_properties_any_request_is_answered_without_a_5xx(index: Index,
                                                          request: tuple[str, str, dict[str, str]]) -> None:
    method, target, headers = request
    index.log.tracebacks.clear()  # each example answers for its own request
    answer = index.send(method, target, headers)
    event(f"{method} {answer[0]}")
    check_answer(index, method, answer)


_FIELD_NAMES = [":action", "name", "version", "filetype", "pyversion", "sha256_digest", "md5_digest",
                "blake2_256_digest", "protocol_version", "metadata_version", "content", "x"]
_filename = st.one_of(
    st.sampled_from([WHEEL, "demo_pkg-2.0-py3-none-any.whl", "demo-pkg-2.0.tar.gz", "demo_pkg-2.0.zip",
                     "../demo_pkg-2.0-py3-none-any.whl", ".demo_pkg-2.0-py3-none-any.whl", "",
                     "a" * 300 + ".whl",
                     'x"; name="y', "demo_pkg-2.0-py3-none-any.whl\\x", "demo_pkg-2.0-py3-none-any.WHL"]),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=60))


@st.composite
def uploads(draw: st.DrawFn, wheels: dict[str, bytes]) -> tuple[dict[str, str], bytes]:
    """A twine form for a real wheel, then mutated: fields dropped, changed or added, another
    filename or other bytes, the body cut short, another content type."""
    filename = draw(st.sampled_from(sorted(wheels)))
    content = wheels[filename]
    content = draw(st.one_of(st.just(content), st.just(content), st.binary(max_size=3000),
                             st.integers(0, len(content)).map(lambda n: content[:n])))
    version = filename.split("-")[1]
    fields = twine_fields(filename, wheels[filename], "demo-pkg", version)
    digest = hashlib.sha256(content).hexdigest()
    value = st.one_of(st.sampled_from(["file_upload", "demo-pkg", "Demo_Pkg", "1.0", "2.0", "bdist_wheel",
                                       "sdist", digest, "", "1"]), _header_text)
    for _ in range(draw(st.integers(0, 3))):
        drop = draw(st.booleans())
        if drop and fields:
            fields.pop(draw(st.integers(0, len(fields) - 1)))
        else:
            fields.append((draw(st.sampled_from(_FIELD_NAMES)), draw(value)))
    filename = draw(st.one_of(st.just(filename), st.just(filename), _filename))
    body = multipart(fields, draw(st.one_of(st.just((filename, content)), st.just((filename, content)),
                                            st.none())), boundary="b0undary")
    cut = draw(st.one_of(st.none(), st.none(), st.integers(0, len(body))))
    content_type = draw(st.sampled_from(["multipart/form-data; boundary=b0undary"] * 4 + [
        "multipart/form-data", "multipart/form-data; boundary=other", "application/x-www-form-urlencoded",
        'multipart/form-data; boundary="b0undary"']))
    auth = base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
    return {"Content-Type": content_type, "Authorization": f"Basic {auth}"}, body[:cut]


@properties
@given(data=st.data())
def test_properties_a_refused_upload_writes_nothing(index: Index, data: st.DataObject) -> None:
    headers, body = data.draw(uploads(index.wheels))
    store = index.config.paths.store
    index.log.tracebacks.clear()
    before = tree(store)
    status, _headers, text = index.send("POST", "/legacy/", headers, body)
    event(f"upload {status}")
    assert status < 500, text
    assert not index.log.tracebacks, index.log.tracebacks
    after = tree(store)
    if status == 200:  # a whole, consistent upload: at most its own file arrived, nothing temporary
        assert set(after) - set(before) <= {f"demo-pkg/{name}" for name in index.wheels}
        assert set(before) <= set(after)
    else:
        assert after == before, text


_KEYS = ["listen", "threads", "processes", "trusted_proxy", "data", "cache", "store", "index", "state",
         "url", "fallback", "timeout", "cache_ttl", "enabled", "users_file", "max_size_mb", "repos_dir",
         "credentials_dir", "publish", "upload_url", "upload_username", "upload_credential", "fetch_timeout",
         "build_timeout", "backoff_max", "debounce", "rescan_interval", "distribution", "credential",
         "username", "tag_pattern", "min_version", "subdirectory", "build"]
_SECTIONS = ["server", "paths", "index", "yank", "upstream", "upload", "fetch", "repos"]
_scalar = st.one_of(st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=False),
                    st.text(max_size=30),
                    st.sampled_from(["127.0.0.1:0", "proxy", "redirect", "off", "upload",
                                     "http://127.0.0.1:9/simple/", "/nonexistent", ""]))
_value = st.recursive(_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.sampled_from(_KEYS), st.text(max_size=10)),
                                                 inner, max_size=4)), max_leaves=12)
_section = st.dictionaries(st.one_of(st.sampled_from(_KEYS), st.text(max_size=12)), _value, max_size=6)
_document = st.dictionaries(st.one_of(st.sampled_from(_SECTIONS), st.text(max_size=10)), _section, max_size=5)


def _inline(value: object) -> str:
    """TOML for any value the strategies make, tables inline (tests.conftest's to_toml has none)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_inline(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    return to_toml({"k": value}).split(" = ", 1)[1].strip()


def _toml_document(document: dict[str, dict[str, object]]) -> bytes:
    lines = []
    for name, table in document.items():
        lines.append(f"[{json.dumps(name)}]")
        lines.extend(f"{json.dumps(key)} = {_inline(value)}" for key, value in table.items())
    return "\n".join(lines).encode()


@properties
@given(content=st.one_of(_document.map(_toml_document), st.binary(max_size=200),
                         st.text(max_size=200).map(str.encode)))
def test_properties_any_config_file_is_a_config_or_one_error_naming_it(tmp_path: Path,
                                                                       content: bytes) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(content)
    problems = _problems_of(path)
    event("ConfigError" if problems else "a valid config")
    assert all(str(path) in problem or "repos" in problem for problem in problems), problems


def _problems_of(path: Path) -> list[str]:
    """What config.load says is wrong; any exception but ConfigError escapes and fails the test."""
    try:
        config.load(str(path))
    except ConfigError as error:
        assert error.problems  # noqa: PT017 - the error is the result here
        return error.problems
    return []
