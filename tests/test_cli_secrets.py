"""Secrets in URLs never reach what the commands print or log: `check-config` (which the index
unit runs at every start and reload, into the journal), `update`'s errors and `status`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ConfigMaker
from tests.support.git_fixtures import cli_env

SECRET = "PIPSECRET-0123456789"
TOKEN = "ghp_TOKENASUSERNAME0123456789"


def _cli(config_file: Path, *args: str,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pypi_insiders", "-c", str(config_file), *args],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**cli_env(), **(env or {})})


def test_leaks_check_config_masks_the_upstream_password(make_config: ConfigMaker) -> None:
    from_file = _cli(make_config(upstream={"url": f"http://piptok:{SECRET}@127.0.0.1:9/simple/"}),
                     "check-config")
    assert from_file.returncode == 0, from_file.stderr
    assert "upstream: http://127.0.0.1:9/simple/ (config)" in from_file.stdout
    from_pip = _cli(make_config(upstream={"url": ""}), "check-config", "--json",
                    env={"PIP_INDEX_URL": f"http://{SECRET}@127.0.0.1:9/simple/"})
    assert '"upstream": "http://127.0.0.1:9/simple/ (PIP_INDEX_URL)"' in from_pip.stdout
    for done in (from_file, from_pip):
        assert SECRET not in done.stdout + done.stderr


def test_leaks_a_token_in_a_hand_written_repository_url_is_masked(make_config: ConfigMaker) -> None:
    """`repos add` refuses it; a drop-in written by hand still never shows it."""
    path = make_config(repos={"acme/open": {"url": f"https://{TOKEN}@127.0.0.1:9/acme/open.git"}})
    update = _cli(path, "update")
    assert update.returncode != 0
    assert "https://127.0.0.1:9/acme/open.git" in update.stderr
    status = _cli(path, "status", "--json")
    listing = _cli(path, "repos", "list")
    assert "https://127.0.0.1:9/acme/open.git" in status.stdout
    assert "https://127.0.0.1:9/acme/open.git" in listing.stdout
    for done in (update, status, listing):
        assert TOKEN not in done.stdout + done.stderr
    written = [p for p in path.parent.rglob("*") if p.is_file() and p != path]
    assert not [p for p in written if TOKEN in p.read_text(errors="replace")]


def test_leaks_a_url_urllib_cannot_parse_is_masked_too(make_config: ConfigMaker) -> None:
    for url in (f"https://{TOKEN}@127.0.0.1:port/acme/open.git", f"https://{TOKEN}@[::1/acme/open.git"):
        done = _cli(make_config(), "repos", "add", url)
        assert done.returncode == 2
        assert "a credential in the URL would be stored in clear" in done.stderr, done.stderr
        assert TOKEN not in done.stderr
        assert "Traceback" not in done.stderr
    done = _cli(make_config(), "repos", "add", "https://[::1/acme/open.git")
    assert (done.returncode, done.stderr.strip()) == (
        2, "pypi-insiders: https://[::1/acme/open.git: not a usable URL (Invalid IPv6 URL)")
