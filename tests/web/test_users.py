"""Users: the `pypi-insiders users` commands as subprocesses, the file they write, the hashes.

The CLI runs as a real process (stdin piped, or a real pseudo-terminal for the prompts); the
request authenticator reads the very file the CLI wrote.
"""

from __future__ import annotations

import logging
import os
import pty
import re
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pypi_insiders.state_layout import StateLayout
from pypi_insiders.web import passwords, scopes
from pypi_insiders.web import users as auth
from pypi_insiders.web.auth import Authenticator, AuthError, FailedLogins, client_bucket, failure_key
from tests.conftest import ConfigMaker
from tests.support.server_fixtures import basic, wait_for

SECRET = "s3cret-passphrase"
HASH = r"[a-z0-9.-]+:\$scrypt\$ln=14,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}"
HASH_LINE = re.compile(HASH + r":read=\*:upload=")


class Users:
    """The request authenticator seen through name and secret, as the tests of the file want it."""

    def __init__(self, path: Path) -> None:
        self.auth = Authenticator(path, failed_logins=FailedLogins(limit=1000))

    def verify(self, name: str, secret: str) -> str | None:
        try:
            user = self.auth.user({"HTTP_AUTHORIZATION": basic(name, secret), "REMOTE_ADDR": "192.0.2.9"})
        except AuthError:
            return None
        return user.name if user else None

    def __len__(self) -> int:
        return len(self.auth)


@pytest.fixture
def config_file(make_config: ConfigMaker) -> Path:
    return make_config()


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    return tmp_path / "users"  # what make_config points upload.users_file at


def users_cli(config_file: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pypi_insiders", "--config", str(config_file), "users",
                           *args], input=stdin, capture_output=True, text=True, timeout=60,
                          check=False, env=dict(os.environ))


def listed_names(config_file: Path) -> list[str]:
    result = users_cli(config_file, "list")
    assert result.returncode == 0, result.stderr
    return [line.split("\t")[0] for line in result.stdout.splitlines()]


def test_auth_hash_is_salted_scrypt_with_its_parameters() -> None:
    first, second = passwords.hash_secret(SECRET), passwords.hash_secret(SECRET)
    assert first != second  # a salt of its own per hash
    assert re.fullmatch(HASH, f"alice:{first}")
    assert passwords.verify_secret(SECRET, first)
    assert not passwords.verify_secret(SECRET + "x", first)


@pytest.mark.parametrize("encoded", [
    "", "plain", "$scrypt$ln=14,r=8,p=1$AAAA", "$pbkdf2$ln=14,r=8,p=1$AAAA$AAAA",
    "$scrypt$ln=40,r=8,p=1$AAAA$AAAA", "$scrypt$ln=14,r=8$AAAA$AAAA", "$scrypt$ln=14,r=8,p=1$!!$AAAA",
])
def test_auth_check_hash_rejects_malformed_or_hostile_parameters(encoded: str) -> None:
    assert not passwords.check_hash(encoded)


def test_users_cli_add_reads_the_secret_from_stdin(config_file: Path, users_file: Path) -> None:
    result = users_cli(config_file, "add", "alice", stdin=SECRET + "\n")
    assert result.returncode == 0, result.stderr
    assert "added user alice" in result.stdout
    assert users_file.stat().st_mode & 0o777 == 0o640
    lines = users_file.read_text().splitlines()
    assert len(lines) == 1
    assert HASH_LINE.fullmatch(lines[0])
    assert SECRET not in users_file.read_text()
    assert Users(users_file).verify("alice", SECRET) == "alice"
    assert Users(users_file).verify("alice", SECRET + "\n") is None


def test_users_cli_add_existing_user_replaces_its_secret(config_file: Path, users_file: Path) -> None:
    assert users_cli(config_file, "add", "alice", stdin=SECRET).returncode == 0
    assert users_cli(config_file, "add", "bob", stdin="bobs-secret\r\n").returncode == 0
    result = users_cli(config_file, "add", "alice", stdin="new-secret-value\n")
    assert result.returncode == 0
    assert result.stdout.startswith("changed user alice")
    assert [line.split(":")[0] for line in users_file.read_text().splitlines()] == ["alice", "bob"]
    users = Users(users_file)
    assert users.verify("alice", SECRET) is None
    assert users.verify("alice", "new-secret-value") == "alice"
    assert users.verify("bob", "bobs-secret") == "bob"


def test_users_cli_token_is_printed_once_and_only_its_hash_stored(config_file: Path,
                                                                  users_file: Path) -> None:
    result = users_cli(config_file, "add", "ci-bot", "--token", stdin="ignored\n")
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert token.startswith(passwords.TOKEN_PREFIX)
    assert len(token) > 40
    assert token not in users_file.read_text()
    assert token not in result.stderr
    users = Users(users_file)
    assert users.verify("ci-bot", token) == "ci-bot"
    assert users.verify(auth.TOKEN_USER, token) == "ci-bot"
    again = users_cli(config_file, "add", "ci-bot", "--token").stdout.strip()
    assert again != token
    assert Users(users_file).verify(auth.TOKEN_USER, token) is None


def test_users_cli_list_and_remove(config_file: Path, users_file: Path) -> None:
    for name in ("alice", "bob", "carol"):
        assert users_cli(config_file, "add", name, stdin=SECRET).returncode == 0
    assert listed_names(config_file) == ["alice", "bob", "carol"]
    removed = users_cli(config_file, "remove", "bob")
    assert removed.returncode == 0
    assert listed_names(config_file) == ["alice", "carol"]
    assert users_file.stat().st_mode & 0o777 == 0o640
    assert Users(users_file).verify("bob", SECRET) is None


def test_users_cli_remove_unknown_user_is_one_line_error(config_file: Path, users_file: Path) -> None:
    assert users_cli(config_file, "add", "alice", stdin=SECRET).returncode == 0
    before = users_file.read_bytes()
    result = users_cli(config_file, "remove", "mallory")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"pypi-insiders: 'mallory': no such user in {users_file}"]
    assert users_file.read_bytes() == before


def test_users_cli_list_without_a_file_lists_nothing(config_file: Path, users_file: Path) -> None:
    result = users_cli(config_file, "list")
    assert (result.returncode, result.stdout) == (0, "")
    assert not users_file.exists()


@pytest.mark.parametrize("name", ["a:b", "a b", "tab\tname", "x" * 65, "__token__", "-dash", "ümlaut",
                                  "new\nline"])
def test_users_cli_add_refuses_bad_names(config_file: Path, users_file: Path, name: str) -> None:
    result = users_cli(config_file, "add", "--", name, stdin=SECRET)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert not users_file.exists()


@pytest.mark.parametrize("secret", ["", "\n", "short\n", "x" * 1025])
def test_users_cli_add_refuses_empty_short_or_huge_secrets(config_file: Path, users_file: Path,
                                                           secret: str) -> None:
    result = users_cli(config_file, "add", "alice", stdin=secret)
    assert result.returncode == 2
    assert result.stderr.startswith("pypi-insiders: the secret must be")
    assert not users_file.exists()


def test_users_cli_prompts_twice_on_a_terminal(config_file: Path, users_file: Path) -> None:
    """A real pseudo-terminal as the controlling tty, so getpass prompts without echo."""
    try:  # a build chroot may have no /dev/ptmx
        master, slave = os.openpty()
    except OSError as error:
        pytest.skip(f"no pseudo-terminal available: {error}")
    os.close(master)
    os.close(slave)
    assert _on_terminal(config_file, ["add", "alice"], [SECRET, SECRET]) == 0
    assert Users(users_file).verify("alice", SECRET) == "alice"
    assert _on_terminal(config_file, ["add", "alice"], ["other-secret", "different"]) == 2
    assert Users(users_file).verify("alice", SECRET) == "alice"


def _on_terminal(config_file: Path, args: list[str], answers: list[str]) -> int:
    argv = [sys.executable, "-m", "pypi_insiders", "--config", str(config_file), "users", *args]
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execve(sys.executable, argv, dict(os.environ))  # noqa: S606 - argv list, no shell
    status: int | None = None
    try:
        output = b""
        for answer in answers:
            output = _read_until(fd, b"secret", output)
            output = output[output.rfind(b"secret") + len(b"secret"):]
            os.write(fd, answer.encode() + b"\n")
        deadline = time.monotonic() + 60
        while status is None and time.monotonic() < deadline:
            _read_until(fd, b"", b"", timeout=0.2)  # drain, so the child never blocks on output
            waited, raw = os.waitpid(pid, os.WNOHANG)
            status = os.waitstatus_to_exitcode(raw) if waited else None
        assert status is not None, "users add did not finish on the terminal"
        return status
    finally:
        if status is None:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)


def _read_until(fd: int, marker: bytes, seen: bytes, timeout: float = 30) -> bytes:
    deadline = time.monotonic() + timeout
    while marker not in seen or not marker:
        left = deadline - time.monotonic()
        if left <= 0:
            if not marker:
                return seen
            msg = f"no {marker!r} prompt; terminal showed {seen!r}"
            raise AssertionError(msg)
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                seen += os.read(fd, 1024)
            except OSError:  # the child closed the terminal
                return seen
    return seen


def test_users_file_keeps_its_group(config_file: Path, users_file: Path) -> None:
    others = [g for g in ({*os.getgroups(), 65534} if os.geteuid() == 0 else set(os.getgroups()))
              if g != os.getegid()]
    if not others:
        pytest.skip("this user belongs to no second group to give the file")
    users_file.write_text("")
    os.chown(users_file, -1, others[0])
    assert users_cli(config_file, "add", "alice", stdin=SECRET).returncode == 0
    assert users_file.stat().st_gid == others[0]
    assert users_file.stat().st_mode & 0o777 == 0o640


def test_users_new_file_takes_its_directory_group(make_config: ConfigMaker, tmp_path: Path) -> None:
    """As in /etc/pypi-insiders/credentials (root:pypi-insiders 0750), where the service reads it."""
    if os.geteuid() != 0:
        pytest.skip("giving a file another group than one's own needs root")
    directory = tmp_path / "secrets"
    directory.mkdir()
    os.chown(directory, -1, 65534)
    config_file = make_config(upload={"users_file": str(directory / "users")})
    assert users_cli(config_file, "add", "alice", stdin=SECRET).returncode == 0
    assert (directory / "users").stat().st_gid == 65534
    assert (directory / "users").stat().st_mode & 0o777 == 0o640


def test_users_file_comments_are_kept_and_bad_lines_skipped(config_file: Path, users_file: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    users_file.write_text(f"# upload users\n\nbroken line\nbob:{passwords.hash_secret(SECRET)}\n")
    users = Users(users_file)
    assert users.verify("bob", SECRET) == "bob"
    assert len(users) == 1
    assert f"{users_file}:3: not NAME:HASH" in caplog.text
    assert users_cli(config_file, "add", "alice", stdin=SECRET).returncode == 0
    lines = users_file.read_text().splitlines()
    assert lines[:3] == ["# upload users", "", "broken line"]
    assert [line.split(":")[0] for line in lines[3:]] == ["bob", "alice"]


def test_users_rereads_the_file_when_it_changes(users_file: Path) -> None:
    auth.write_lines(users_file, auth.parse_lines(f"alice:{passwords.hash_secret(SECRET)}\n", users_file))
    users = Users(users_file)
    assert users.verify("alice", SECRET) == "alice"
    assert users.verify("bob", SECRET) is None
    auth.write_lines(users_file, auth.parse_lines(f"bob:{passwords.hash_secret(SECRET)}\n", users_file))
    # The cached success is forgotten within a second (the file is looked at every 0.2 s).
    assert wait_for(lambda: users.verify("alice", SECRET) is None, timeout=5)
    assert users.verify("bob", SECRET) == "bob"


def test_users_cache_spares_the_kdf_for_repeated_credentials(users_file: Path) -> None:
    users_file.write_text(f"alice:{passwords.hash_secret(SECRET)}\n")
    users = Users(users_file)
    assert users.verify("alice", SECRET) == "alice"
    assert users.auth.kdf_runs == 1
    for _ in range(50):
        assert users.verify("alice", SECRET) == "alice"
    assert users.auth.kdf_runs == 1
    assert users.verify("alice", "wrong-secret") is None
    assert users.verify("alice", "wrong-secret") is None
    assert users.auth.kdf_runs == 3  # failures are never cached: no cheap guessing


@pytest.mark.parametrize(("address", "bucket"), [
    ("192.0.2.9", "192.0.2.9"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
    ("::ffff:192.0.2.9", "192.0.2.9"),
    ("not-an-address", "not-an-address"),
])
def test_users_failures_count_per_ipv4_address_and_ipv6_64(address: str, bucket: str) -> None:
    assert client_bucket(address) == bucket
    assert failure_key(address, "alice") == f"{bucket} alice"
    assert failure_key(address, None) == f"{bucket} ?"


def test_users_a_rotating_ipv6_guesser_is_limited_per_64(users_file: Path) -> None:
    users_file.write_text(f"alice:{passwords.hash_secret(SECRET)}\n")
    authenticator = Authenticator(users_file, failed_logins=FailedLogins(limit=3))
    statuses = []
    for n in range(4):
        try:
            authenticator.user({"HTTP_AUTHORIZATION": basic("alice", "wrong"),
                                "REMOTE_ADDR": f"2001:db8::{n + 1:x}"})
        except AuthError as error:
            statuses.append(error.status)
    assert statuses == [401, 401, 401, 429]
    assert authenticator.kdf_runs == 3
    user = authenticator.user({"HTTP_AUTHORIZATION": basic("alice", SECRET),
                               "REMOTE_ADDR": "2001:db8:0:1::1"})
    assert user is not None


def test_users_a_token_sent_as_the_user_name_is_never_repeated(users_file: Path) -> None:
    users_file.write_text(f"alice:{passwords.hash_secret(SECRET)}\n")
    authenticator = Authenticator(users_file)
    token = passwords.make_token("al")
    for name, secret in ((token, "__token__"), ("alice", "wrong"), ("bob", "x")):
        with pytest.raises(AuthError) as caught:
            authenticator.user({"HTTP_AUTHORIZATION": basic(name, secret), "REMOTE_ADDR": "192.0.2.9"})
        assert token not in caught.value.message
        assert ("'alice'" in caught.value.message) == (name == "alice")


def test_users_a_burst_with_one_new_header_runs_one_kdf(users_file: Path) -> None:
    """A CI job's parallel first downloads: they wait for one verification, not one each."""
    users_file.write_text(f"alice:{passwords.hash_secret(SECRET)}\n")
    users = Users(users_file)
    start = threading.Barrier(8)
    names: list[str | None] = []

    def login() -> None:
        start.wait(timeout=10)
        names.append(users.verify("alice", SECRET))

    threads = [threading.Thread(target=login) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert names == ["alice"] * 8
    assert users.auth.kdf_runs == 1


def test_users_missing_or_empty_file_refuses_everyone_with_one_warning(
        users_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    users = Users(users_file)
    for _ in range(3):
        assert users.verify("alice", SECRET) is None
    warnings = [r for r in caplog.records if "no users" in r.getMessage()]
    assert len(warnings) == 1
    users_file.write_text("# nobody yet\n")
    assert users.verify("alice", SECRET) is None
    assert len(users) == 0


def test_users_checks_never_log_secrets(config_file: Path, users_file: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    users_file.write_text(f"alice:{passwords.hash_secret(SECRET)}\nbroken:{SECRET}\n")
    users = Users(users_file)
    users.verify("alice", SECRET)
    users.verify("alice", "another-secret")
    users.verify(auth.TOKEN_USER, SECRET)
    assert SECRET not in caplog.text
    assert "another-secret" not in caplog.text


@pytest.mark.parametrize("token", ["", "insiders-", "insiders-!!.x", "pypi-AgEIcHlwaS5vcmc", "insiders-.x",
                                   "insiders-OjpiYWQ.x"])
def test_auth_token_owner_ignores_foreign_or_forged_tokens(token: str) -> None:
    assert passwords.token_owner(token) is None


def test_auth_token_owner_finds_the_user() -> None:
    assert passwords.token_owner(passwords.make_token("ci.bot@example")) == "ci.bot@example"


def test_users_cli_concurrent_adds_lose_nobody(config_file: Path, users_file: Path) -> None:
    names = [f"user{n}" for n in range(8)]
    argv = [sys.executable, "-m", "pypi_insiders", "--config", str(config_file), "users", "add"]
    processes = [subprocess.Popen([*argv, name], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True, env=dict(os.environ)) for name in names]
    try:
        results = [p.communicate(SECRET + "\n", timeout=60) for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
    assert [p.returncode for p in processes] == [0] * len(names), results
    assert sorted(line.split(":")[0] for line in users_file.read_text().splitlines()) == names


# --------------------------------------------------------------------------- scopes, expiry, last use


def test_users_cli_add_scopes_are_normalized_and_default_to_read_all(config_file: Path,
                                                                     users_file: Path) -> None:
    assert users_cli(config_file, "add", "alice", stdin=SECRET).returncode == 0
    result = users_cli(config_file, "add", "ci", "--read", "Mkdocs_Material, not.yet.here",
                       "--upload", "mkdocs-material", stdin=SECRET)
    assert result.returncode == 0, result.stderr
    users = auth.read_users(users_file)
    assert (str(users["alice"].read), users["alice"].upload) == ("*", scopes.NOTHING)
    assert users["ci"].read.names == {"mkdocs-material", "not-yet-here"}  # a project may appear later
    assert users["ci"].upload.covers("mkdocs-material")
    assert not users["ci"].upload.covers("other")


def test_users_first_version_lines_keep_read_and_upload_everything(users_file: Path) -> None:
    users_file.write_text(f"old:{passwords.hash_secret(SECRET)}\n")
    old = auth.read_users(users_file)["old"]
    assert old.read.everything
    assert old.upload.everything
    assert old.expires is None


@pytest.mark.parametrize(("args", "message"), [
    (["--expires", "0"], "--expires: expected a positive number of days"),
    (["--expires", "-3"], "--expires: expected a positive number of days"),
    (["--expires", "soon"], "--expires: expected a positive number of days"),
    (["--expires", "nan"], "--expires: expected a positive number of days"),
    (["--expires", "1e9"], "--expires: expected a positive number of days"),
    (["--read", "a,,b"], "--read: not a project name: ''"),
    (["--upload", "bad name!"], "--upload: not a project name: 'bad name!'"),
    (["--read", "*,x"], "--read: not a project name: '*'"),
])
def test_users_cli_add_refuses_bad_scopes_and_expiry_in_one_line(config_file: Path, users_file: Path,
                                                                 args: list[str], message: str) -> None:
    result = users_cli(config_file, "add", "alice", *args, stdin=SECRET)
    assert result.returncode == 2
    assert result.stderr.startswith(f"pypi-insiders: {message}"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not users_file.exists()


def test_users_cli_token_with_scopes_and_expiry_is_listed(config_file: Path, users_file: Path,
                                                          tmp_path: Path) -> None:
    result = users_cli(config_file, "add", "ci-bot", "--token", "--read", "demo-pkg", "--expires", "30")
    assert result.returncode == 0, result.stderr
    token = result.stdout.splitlines()[0]
    assert token.startswith(passwords.TOKEN_PREFIX)
    assert result.stdout == token + "\n"  # the token alone on standard output, the rest on stderr
    listed = users_cli(config_file, "list").stdout.splitlines()
    assert len(listed) == 1
    fields = listed[0].split("\t")
    assert fields[:5] == ["ci-bot", "token", "read=demo-pkg", "upload=-", fields[4]]
    expires = time.mktime(time.strptime(fields[4], "expires=%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert abs(expires - (time.time() + 30 * 86400)) < 3600
    assert fields[5] == "last-use=never"
    # The server records a successful login; `users list` shows it.
    last_use = StateLayout(tmp_path / "data").users_last_use
    authenticator = Authenticator(users_file, last_use)
    user = authenticator.user({"HTTP_AUTHORIZATION": basic(auth.TOKEN_USER, token), "REMOTE_ADDR": "::1"})
    assert user is not None
    assert user.name == "ci-bot"
    shown = users_cli(config_file, "list").stdout.split("\t")[5].strip()
    assert shown.startswith("last-use=20")
    assert token not in last_use.read_text()


def test_users_expiry_passing_refuses_a_cached_login(users_file: Path) -> None:
    soon = time.time() + 1.5
    user = auth.User("temp", passwords.hash_secret(SECRET), expires=soon)
    users_file.write_text(user.line() + "\n")
    authenticator = Authenticator(users_file)
    environ = {"HTTP_AUTHORIZATION": basic("temp", SECRET), "REMOTE_ADDR": "192.0.2.3"}
    found = authenticator.user(environ)
    assert found is not None
    assert found.name == "temp"

    def refused() -> bool:
        try:
            authenticator.user(environ)
        except AuthError:
            return True
        return False

    assert wait_for(refused, timeout=10)
    with pytest.raises(AuthError, match="expired") as refusal:
        authenticator.user(environ)
    assert refusal.value.status == 401


def test_users_hand_edited_broken_lines_name_the_line_and_others_keep_working(
        users_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = auth.User("good", passwords.hash_secret(SECRET), read=scopes.parse_scope("demo"))
    users_file.write_text("\n".join([
        good.line(),
        good.line().replace("good:", "dup:").replace(":read=demo", ":read=bad name"),
        good.line().replace("good:", "typo:") + ":colour=blue",
        good.line().replace("good:", "late:") + ":expires=tomorrow",
        "good:" + good.hashed,  # listed twice
    ]) + "\n")
    users = auth.read_users(users_file)
    assert list(users) == ["good"]
    assert str(users["good"].read) == "demo"
    for number, reason in ((2, "not a project name"), (3, "unknown field 'colour'"),
                           (4, "is not a time"), (5, "listed twice")):
        assert any(f"{users_file}:{number}: " in r.getMessage() and reason in r.getMessage()
                   for r in caplog.records), (number, caplog.text)
    assert good.hashed not in caplog.text
