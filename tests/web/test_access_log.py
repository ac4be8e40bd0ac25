"""The access and audit log over real HTTP: which requests get an entry, its fields, the flood limit.

The app runs on waitress made as the service makes it (`trusted_proxy` set, so CLIENT is the
address in X-Forwarded-For); the entries are the records a logging handler of the test
receives, journald's fields being the records' extra attributes. The stderr line and `-q` are
checked on a real `pypi-insiders serve`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from pypi_insiders import config, sd
from pypi_insiders.errors import ConfigError
from pypi_insiders.service.server import create_server
from pypi_insiders.web import access_log
from pypi_insiders.web.app import make_app
from pypi_insiders.web.response import Response
from tests.conftest import ConfigMaker
from tests.support import team_fixtures as team_setup
from tests.support.distfiles import make_wheel
from tests.support.server_fixtures import (
    FakeUpstream,
    Reply,
    ThreadedServer,
    basic,
    request,
    serve_process,
    status_snapshot,
    wait_for,
)

FIELDS = ("CLIENT", "USER", "PROJECT", "FILE", "STATUS", "BYTES", "DURATION_MS")
PRIVATE = f"/packages/private-pkg/{team_setup.PRIVATE_WHEEL}"
PUBLIC = f"/packages/public-pkg/{team_setup.PUBLIC_WHEEL}"


class Entries(logging.Handler):
    """Every record of the access logger, as journald's handler would get it.

    The entries of finished requests are written by the log's writer thread; `drain` writes them
    at once, so what a test reads is every request it made, never a guess at a delay.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._records: list[logging.LogRecord] = []
        self.drain: Callable[[], None] = lambda: None

    def emit(self, record: logging.LogRecord) -> None:
        self._records.append(record)

    @property
    def records(self) -> list[logging.LogRecord]:
        self.drain()
        return self._records

    def fields(self) -> list[dict[str, str]]:
        return [{k: getattr(r, k) for k in FIELDS if hasattr(r, k)} for r in self.records
                if hasattr(r, "STATUS")]


@dataclass
class Audited:
    url: str
    entries: Entries
    tokens: dict[str, str]
    store: Path

    def get(self, path: str, auth: str | None = None, **headers: str) -> Reply:
        return team_setup.request_as(self.url, path, auth, **headers)


@pytest.fixture
def entries() -> Iterator[Entries]:
    handler = Entries()
    logger = logging.getLogger(sd.ACCESS_LOG)
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _audited(make_config: ConfigMaker, data_dir: Path, tmp_path: Path, entries: Entries, *,
             enabled: bool = True) -> Iterator[Audited]:
    fake = FakeUpstream(projects={"remote-only": {"remote_only-1.0-py3-none-any.whl": b"remote"}})
    with ThreadedServer(fake.app) as upstream:
        loaded, tokens = team_setup.make_team(make_config, data_dir, tmp_path, upstream)
        loaded = replace(loaded, server=replace(loaded.server, trusted_proxy="127.0.0.1",
                                                    access_log=enabled))
        app = make_app(loaded, status=status_snapshot(loaded))
        if app.access_log is not None:
            entries.drain = app.access_log.drain
        with ThreadedServer(app, server=create_server(app, loaded)) as service:
            yield Audited(service.url, entries, tokens, data_dir / "store")


@pytest.fixture
def audited(make_config: ConfigMaker, data_dir: Path, tmp_path: Path, entries: Entries) -> Iterator[Audited]:
    yield from _audited(make_config, data_dir, tmp_path, entries)


def test_access_log_is_the_logger_that_quiet_silences() -> None:
    assert access_log.log.name == sd.ACCESS_LOG


def test_access_log_page_read_has_its_fields(audited: Audited) -> None:
    reply = audited.get("/simple/private-pkg/", basic("sponsor", team_setup.SECRET))
    assert reply.status == 200
    [entry] = audited.entries.fields()
    assert float(entry.pop("DURATION_MS")) >= 0
    assert entry == {"CLIENT": "127.0.0.1", "USER": "sponsor", "PROJECT": "private-pkg", "STATUS": "200",
                     "BYTES": str(len(reply.body))}
    [record] = audited.entries.records
    assert record.levelno == logging.INFO
    assert record.getMessage().startswith('127.0.0.1 sponsor "GET /simple/private-pkg/" 200 ')


def test_access_log_file_read_by_a_token_user_names_user_file_and_client(audited: Audited) -> None:
    token = basic("__token__", audited.tokens["ci"])
    reply = audited.get(PUBLIC, token, X_Forwarded_For="198.51.100.7")
    assert reply.status == 200
    [entry] = audited.entries.fields()
    assert entry["USER"] == "ci"
    assert entry["CLIENT"] == "198.51.100.7"  # what the trusted proxy says
    assert (entry["PROJECT"], entry["FILE"]) == ("public-pkg", f"public-pkg/{team_setup.PUBLIC_WHEEL}")
    assert entry["BYTES"] == str((audited.store / "public-pkg" / team_setup.PUBLIC_WHEEL).stat().st_size)
    metadata = audited.get(f"{PRIVATE}.metadata", basic("sponsor", team_setup.SECRET))
    assert metadata.status == 200
    assert audited.entries.fields()[-1]["FILE"] == f"private-pkg/{team_setup.PRIVATE_WHEEL}.metadata"


def test_access_log_file_sent_by_nginx_counts_the_files_bytes_and_a_304_none(audited: Audited) -> None:
    token = basic("__token__", audited.tokens["ci"])
    sent = audited.get(PUBLIC, token, X_Sendfile_Type="X-Accel-Redirect")
    assert (sent.status, sent.body) == (200, b"")
    size = (audited.store / "public-pkg" / team_setup.PUBLIC_WHEEL).stat().st_size
    assert audited.entries.fields()[-1]["BYTES"] == str(size)
    current = audited.get(PUBLIC, token, If_None_Match=sent.header("ETag") or "")
    assert current.status == 304
    entry = audited.entries.fields()[-1]
    assert (entry["STATUS"], entry["BYTES"], entry["USER"]) == ("304", "0", "ci")
    assert entry["PROJECT"] == "public-pkg"


def test_access_log_refusals_are_logged_without_a_user(audited: Audited) -> None:
    assert audited.get("/simple/private-pkg/").status == 401
    assert audited.get(PRIVATE, basic("sponsor", "wrong-guess-123")).status == 401
    assert audited.get(PRIVATE, basic("__token__", audited.tokens["ci"])).status == 403
    assert audited.get("/status").status == 401
    found = audited.entries.fields()
    assert [e["STATUS"] for e in found] == ["401", "401", "403", "401"]
    # Wrong credentials are refused before any routing: the path is in the message only.
    assert [e.get("PROJECT") for e in found] == ["private-pkg", None, "private-pkg", None]
    assert [e.get("USER") for e in found] == [None, None, "ci", None]


@pytest.mark.parametrize(("forwarded", "client"), [
    ('10.0.0.1 admin "GET /packages/secret-proj/secret_proj-2.0.tar.gz" 200 999 0.1ms', "127.0.0.1"),
    ("203.0.113.1, 198.51.100.9", "198.51.100.9"),  # the hop the proxy added
    ("198.51.100.9, bogus", "127.0.0.1"),
    ("[2001:db8::1]", "2001:db8::1"),
])
def test_access_log_client_is_an_address_never_a_forged_entry(audited: Audited, forwarded: str,
                                                              client: str) -> None:
    assert audited.get("/simple/private-pkg/", X_Forwarded_For=forwarded).status == 401
    [entry] = audited.entries.fields()
    assert entry["CLIENT"] == client
    [record] = audited.entries.records
    assert record.getMessage().startswith(f'{client} - "GET /simple/private-pkg/" 401 ')


def test_access_log_escapes_what_comes_from_the_request() -> None:
    handler = Entries()
    access_log.log.addHandler(handler)
    level = access_log.log.level
    access_log.log.setLevel(logging.INFO)
    try:
        log = access_log.AccessLog()
        environ = {"REMOTE_ADDR": 'x" 200 1 1ms\n', "REQUEST_METHOD": 'GET "x', "PATH_INFO": "/a b\"c"}
        log.record(environ, Response("401 Unauthorized", [], project=canonicalize_name("demo")),
                   time.perf_counter())
        log.drain()
    finally:
        access_log.log.removeHandler(handler)
        access_log.log.setLevel(level)
    [entry] = handler.records
    assert entry.getMessage().startswith('x%22%20200%201%201ms%0A - "GET%20%22x /a%20b%22c" 401 ')
    assert entry.__dict__["CLIENT"] == "x%22%20200%201%201ms%0A"


def test_access_log_leaves_out_names_that_are_not_local(audited: Audited) -> None:
    assert audited.get("/simple/remote-only/").status == 302  # upstream's: pip asks per dependency
    assert audited.get("/simple/", basic("sponsor", team_setup.SECRET)).status == 200
    assert audited.entries.records == []
    assert audited.get("/simple/public-pkg/").status == 302  # a local name sent upstream: audited
    assert audited.entries.fields()[0]["PROJECT"] == "public-pkg"


def test_access_log_never_has_a_secret(audited: Audited, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = audited.tokens["ci"]
    headers = [basic("sponsor", team_setup.SECRET), basic("sponsor", "wrong-guess-123"),
               basic("__token__", token), basic("member", team_setup.SECRET)]
    for header in headers:
        audited.get(PUBLIC, header)
        audited.get("/simple/private-pkg/?token=query-secret-9", header)
    assert len(audited.entries.records) == 2 * len(headers)
    texts = [r.getMessage() for r in caplog.records]
    texts += [str(v) for r in caplog.records for v in vars(r).values()]
    for secret in (team_setup.SECRET, "wrong-guess-123", token, "query-secret-9", *headers):
        assert not [t for t in texts if secret in t], secret


def test_access_log_limits_a_flood_of_404s_and_says_how_many(audited: Audited) -> None:
    auth = basic("sponsor", team_setup.SECRET)
    sent = 3 * access_log.REFUSALS_PER_SECOND
    began = time.monotonic()
    for n in range(sent):
        assert audited.get(f"/packages/private-pkg/private_pkg-7.{n}-py3-none-any.whl", auth).status == 404
    seconds = int(time.monotonic() - began) + 2  # the windows the flood can have touched

    def logged() -> int:
        return len([e for e in audited.entries.fields() if e["STATUS"] == "404"])

    def said() -> int:
        return sum(int(r.SUPPRESSED) for r in audited.entries.records if hasattr(r, "SUPPRESSED"))

    assert access_log.REFUSALS_PER_SECOND <= logged() <= seconds * access_log.REFUSALS_PER_SECOND
    # What was left out is said with the next entry once the flood's second is over.
    assert wait_for(lambda: audited.get("/simple/private-pkg/", auth).status == 200
                    and logged() + said() == sent, timeout=5, step=0.2), (logged(), said())
    summaries = [r for r in audited.entries.records if hasattr(r, "SUPPRESSED")]
    assert all(r.levelno == logging.WARNING for r in summaries)
    assert f"{summaries[0].SUPPRESSED} refused requests not logged" in summaries[0].getMessage()


def test_access_log_off_in_the_config(make_config: ConfigMaker, data_dir: Path, tmp_path: Path,
                                      entries: Entries) -> None:
    for audited in _audited(make_config, data_dir, tmp_path, entries, enabled=False):
        assert audited.get("/simple/private-pkg/").status == 401
        assert audited.get(PRIVATE, basic("sponsor", team_setup.SECRET)).status == 200
        assert entries.records == []


def test_access_log_config_key_is_a_boolean(make_config: ConfigMaker) -> None:
    assert config.load(str(make_config())).server.access_log is True
    assert config.load(str(make_config(server={"access_log": False}))).server.access_log is False
    with pytest.raises(ConfigError, match=r"server\.access_log"):
        config.load(str(make_config(server={"access_log": "yes"})))


def test_access_log_is_one_stderr_line_per_request_and_quiet_turns_it_off(make_config: ConfigMaker,
                                                                          data_dir: Path) -> None:
    make_wheel(data_dir / "store" / "demo", "demo", "1.0")
    path = make_config(access={"anonymous": "read"})
    with serve_process(path) as served:
        assert request(served.url, "/simple/demo/").status == 200
        assert request(served.url, "/packages/demo/demo-1.0-py3-none-any.whl").status == 200
        assert wait_for(lambda: '"GET /packages/demo/demo-1.0-py3-none-any.whl" 200' in served.output())
        lines = [line for line in served.output().splitlines() if '"GET /' in line]
        assert len(lines) == 2
        assert ' INFO pypi_insiders.web.access_log: 127.0.0.1 - "GET /simple/demo/" 200 ' in lines[0]
    with serve_process(path, options=["-q"]) as served:
        assert request(served.url, "/simple/demo/").status == 200
        assert request(served.url, "/packages/demo/demo-1.0-py3-none-any.whl").status == 200
        assert request(served.url, "/simple/demo/?again").status == 200
    output = served.output()  # stopped: whatever was queued has been written
    assert "stopped" in output
    assert '"GET /' not in output
    assert "serving" in output  # -q silences the access log only


def test_access_log_project_page_refusal_names_the_project(audited: Audited) -> None:
    assert audited.get("/project/private-pkg/").status == 401
    [entry] = audited.entries.fields()
    assert (entry["PROJECT"], entry["STATUS"]) == ("private-pkg", "401")
