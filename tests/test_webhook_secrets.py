"""[webhooks] and `webhook_secret`: defaults, one-line errors naming the key, the secret files' checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from pypi_insiders import config, webhook_secrets
from pypi_insiders.cli import main
from pypi_insiders.config import RepoConfig
from pypi_insiders.errors import ConfigError, CredentialError
from tests.conftest import ConfigMaker

GOOD = "0123456789abcdef0123456789abcdef"


def test_webhook_config_defaults_off_with_a_directory_of_its_own(make_config: ConfigMaker,
                                                                  tmp_path: Path) -> None:
    loaded = config.load(str(make_config()))
    assert loaded.webhooks.enabled is False
    assert loaded.webhooks.max_body == 1024 * 1024
    assert loaded.webhooks.secrets_dir == tmp_path / "webhook-secrets"
    assert loaded.webhooks.secrets_dir != loaded.fetch.credentials_dir


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        ({"webhooks": {"enabled": "yes"}}, r"webhooks\.enabled: expected true or false"),
        ({"webhooks": {"max_body": 10}}, r"webhooks\.max_body: must be 1024 to"),
        ({"webhooks": {"max_body": 1 << 40}}, r"webhooks\.max_body: must be 1024 to"),
        ({"webhooks": {"enable": True}}, r"webhooks\.enable: unknown key \(did you mean 'enabled'\?\)"),
        ({"repos": {"x": {"url": "file:///r", "webhook_secret": "../x"}}}, r"repos\.x\.webhook_secret:"),
        ({"repos": {"x": {"url": "file:///r", "webhook_secrets": "a"}}},
         r"repos\.x\.webhook_secrets: unknown key \(did you mean 'webhook_secret'\?\)"),
    ],
)
def test_webhook_config_errors_name_the_key(make_config: ConfigMaker, tables: dict[str, dict[str, object]],
                                            message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.load(str(make_config(**tables)))


def test_webhook_config_refuses_the_git_credentials_directory(make_config: ConfigMaker,
                                                              tmp_path: Path) -> None:
    path = make_config(webhooks={"secrets_dir": str(tmp_path / "credentials")})
    with pytest.raises(ConfigError, match=r"webhooks\.secrets_dir: must not be fetch\.credentials_dir"):
        config.load(str(path))


def _repo_with_secret(make_config: ConfigMaker, content: str | None, mode: int = 0o600) -> config.Config:
    loaded = config.load(str(make_config(webhooks={"enabled": True},
                                         repos={"a/b": {"url": "file:///r", "webhook_secret": "hook-ab"}})))
    if content is not None:
        loaded.webhooks.secrets_dir.mkdir(exist_ok=True)
        path = loaded.webhooks.secrets_dir / "hook-ab"
        path.write_text(content)
        path.chmod(mode)
    return loaded


def _repo(loaded: config.Config) -> RepoConfig:
    repo = loaded.repo("a/b")
    assert repo is not None
    return repo


def test_webhook_secret_one_or_two_lines(make_config: ConfigMaker) -> None:
    loaded = _repo_with_secret(make_config, f"{GOOD}\n{GOOD[::-1]}\n")
    assert webhook_secrets.read(loaded, _repo(loaded)) == (GOOD.encode(), GOOD[::-1].encode())


@pytest.mark.parametrize(
    ("content", "mode", "message"),
    [
        (None, 0o600, r"repos\.a/b\.webhook_secret: 'hook-ab' not found in"),
        ("", 0o600, r"repos\.a/b\.webhook_secret: .* is empty"),
        (f"{GOOD}\n", 0o644, r"repos\.a/b\.webhook_secret: .* is readable by every user"),
        ("short\n", 0o600, r"repos\.a/b\.webhook_secret: .* shorter than 16"),
        (f"{GOOD}\n" * 5, 0o600, r"one secret a line, at most 4"),
    ],
)
def test_webhook_secret_refusals(make_config: ConfigMaker, content: str | None, mode: int, message: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    loaded = _repo_with_secret(make_config, content, mode)
    with pytest.raises(CredentialError, match=message):
        webhook_secrets.read(loaded, _repo(loaded))
    assert main(["--config", str(loaded.path), "check-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pypi-insiders: repos.a/b.webhook_secret:")
    assert len(err.splitlines()) == 1
    assert GOOD not in err


def test_webhook_secret_systemd_credential_wins(make_config: ConfigMaker, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = _repo_with_secret(make_config, f"{GOOD}\n")
    creds = tmp_path / "run-credentials"
    creds.mkdir()
    (creds / "hook_hook-ab").write_text(f"{GOOD[::-1]}\n")
    (creds / "hook_hook-ab").chmod(0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert webhook_secrets.read(loaded, _repo(loaded)) == (GOOD[::-1].encode(),)


def test_webhook_check_config_warns_when_enabled_without_secrets(
        make_config: ConfigMaker, capsys: pytest.CaptureFixture[str]) -> None:
    path = make_config(webhooks={"enabled": True}, repos={"x": {"url": "file:///r"}})
    assert main(["--config", str(path), "check-config"]) == 0
    captured = capsys.readouterr()
    assert "warning: webhooks.enabled is true but no repository has a webhook_secret" in captured.err
    assert "webhooks: enabled (0 with a secret)" in captured.out


def test_webhook_check_config_ignores_secrets_while_disabled(make_config: ConfigMaker) -> None:
    path = make_config(repos={"x": {"url": "file:///r", "webhook_secret": "missing"}})
    assert main(["--config", str(path), "check-config"]) == 0


def test_webhook_secret_create_is_0600_and_never_replaces(make_config: ConfigMaker) -> None:
    loaded = config.load(str(make_config()))
    secret = webhook_secrets.create(loaded, "hook-x")
    assert secret is not None
    assert len(secret) == 64
    path = loaded.webhooks.secrets_dir / "hook-x"
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text() == f"{secret}\n"
    assert webhook_secrets.create(loaded, "hook-x") is None
    assert path.read_text() == f"{secret}\n"
