"""Secrets for private repositories and the upload target, read from files and kept out of sight.

A credential is a file named by the repository's `credential` key, looked up first in
`$CREDENTIALS_DIRECTORY` (systemd's LoadCredential=, private to the running unit), then in
`fetch.credentials_dir` (/etc/pypi-insiders/credentials/). A file readable by others is
refused. Its content decides its kind: a PEM private key is an SSH key, anything else an
HTTPS token (`user:password` on one line also works). Secrets go only into dulwich's
HTTP client object or a 0600 temporary key file: never argv, a log line, an error or a URL.
"""

from __future__ import annotations

import os
import shlex
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pypi_insiders.config import Config, RepoConfig
from pypi_insiders.errors import CredentialError
from pypi_insiders.state_layout import StateLayout

DEFAULT_USERNAME = "x-access-token"  # what forges accept with a bare token as the password
_MAX_SIZE = 64 * 1024


@dataclass(frozen=True)
class HttpAuth:
    username: str
    password: str

    def __repr__(self) -> str:  # a stray debug print must not show the secret
        return f"HttpAuth(username={self.username!r}, password=<hidden>)"


@dataclass(frozen=True)
class SshKey:
    key: bytes

    def __repr__(self) -> str:
        return "SshKey(<hidden>)"


Credential = HttpAuth | SshKey
SYSTEMD_CREDENTIAL_PREFIX = "repo_"


def find_file(config: Config, name: str) -> Path:
    """The credential file: systemd's private directory wins over the configured one."""
    systemd_dir = os.environ.get("CREDENTIALS_DIRECTORY", "")
    # The fetch unit loads the whole credentials directory (LoadCredential=repo:DIR), which
    # systemd 252 names `repo_<file name>`; a unit of the admin's may load single files.
    candidates = [Path(systemd_dir) / f"{SYSTEMD_CREDENTIAL_PREFIX}{name}",
                  Path(systemd_dir) / name] if systemd_dir else []
    candidates.append(config.fetch.credentials_dir / name)
    for path in candidates:
        if path.is_file():
            return path
    where = " or ".join(dict.fromkeys(str(p.parent) for p in candidates))
    msg = f"credential {name!r} not found in {where}"
    raise CredentialError(msg)


def read_secret(config: Config, name: str, owner: str) -> bytes:
    """The file's bytes after the permission check; `owner` names who needs it in errors."""
    try:
        path = find_file(config, name)
    except CredentialError as error:
        msg = f"{owner}: {error}"
        raise CredentialError(msg) from None
    info = path.stat()
    if info.st_mode & stat.S_IROTH:
        msg = (
            f"{owner}: {path} is readable by every user; "
                              f"make it private (chmod o-rwx {shlex.quote(str(path))})"
        )
        raise CredentialError(msg)
    if info.st_size > _MAX_SIZE:
        msg = f"{owner}: {path} is too large to be a credential"
        raise CredentialError(msg)
    try:
        data = path.read_bytes()
    except OSError as error:
        msg = f"{owner}: cannot read {path}: {error.strerror}"
        raise CredentialError(msg) from None
    if not data.strip():
        msg = f"{owner}: {path} is empty"
        raise CredentialError(msg)
    return data


def parse(data: bytes, username: str | None, owner: str, path_hint: str) -> Credential:
    first_line = data.lstrip().split(b"\n", 1)[0]
    if first_line.startswith(b"-----BEGIN") and b"PRIVATE KEY" in first_line:
        return SshKey(data if data.endswith(b"\n") else data + b"\n")
    try:
        text = data.decode().strip()
    except UnicodeDecodeError:
        msg = f"{owner}: {path_hint} is neither a token nor a PEM private key"
        raise CredentialError(msg) from None
    if "\n" in text:
        msg = f"{owner}: {path_hint} must hold one line (a token or user:password)"
        raise CredentialError(msg)
    if username is None and ":" in text:
        user, _, password = text.partition(":")
        return HttpAuth(user, password)
    return HttpAuth(username or DEFAULT_USERNAME, text)


def for_repo(config: Config, repo: RepoConfig) -> Credential | None:
    if repo.credential is None:
        return None
    owner = f"repository {repo.key}"
    data = read_secret(config, repo.credential, owner)
    return parse(data, repo.username, owner, f"credential {repo.credential!r}")


def for_upload(config: Config) -> HttpAuth | None:
    name = config.fetch.upload_credential
    if name is None:
        return None
    credential = parse(read_secret(config, name, "fetch.upload_credential"),
                       config.fetch.upload_username, "fetch.upload_credential", f"credential {name!r}")
    if not isinstance(credential, HttpAuth):
        msg = f"fetch.upload_credential: {name!r} is an SSH key, the upload needs a token"
        raise CredentialError(msg)
    return credential


def known_hosts_path(config: Config) -> Path:
    """SSH host keys seen at the first fetch (or pinned there by the administrator)."""
    return StateLayout(config.paths.state).known_hosts


def ssh_command(config: Config, *, own_keys: bool = False) -> str:
    """Options for every SSH fetch: never prompt, remember hosts in our state (unhashed, so that
    an administrator can read and pin them). With a credential only its key is offered; without
    one (`own_keys`) the user's own keys are, their agent's included, as `git fetch` would."""
    known_hosts = known_hosts_path(config)
    timeout = max(1, int(min(config.fetch.fetch_timeout, 60)))
    identities = [] if own_keys else ["-o", "IdentitiesOnly=yes"]
    return shlex.join(["ssh", "-o", "BatchMode=yes", *identities,
                       "-o", "StrictHostKeyChecking=accept-new",
                       "-o", f"UserKnownHostsFile={known_hosts}", "-o", "HashKnownHosts=no",
                       "-o", f"ConnectTimeout={timeout}", "-o", "ServerAliveInterval=15"])


@contextmanager
def transport_kwargs(config: Config, repo: RepoConfig, scheme: str) -> Iterator[dict[str, Any]]:
    """Keyword arguments for dulwich's client of this scheme, with the key file alive meanwhile."""
    credential = for_repo(config, repo)
    if scheme == "ssh":
        if isinstance(credential, HttpAuth):
            msg = (
                f"repository {repo.key}: credential {repo.credential!r} is a token, "
                                  "but the URL uses SSH: give it a PEM private key"
            )
            raise CredentialError(msg)
        with _private_key_file(credential) as key_file:
            yield {"ssh_command": ssh_command(config, own_keys=credential is None),
                   "key_filename": key_file}
        return
    if isinstance(credential, SshKey):
        msg = (
            f"repository {repo.key}: credential {repo.credential!r} is an SSH key, "
                              f"but the URL uses {scheme}: give a token or an ssh:// URL"
        )
        raise CredentialError(msg)
    if scheme in ("http", "https") and credential is not None:
        yield {"username": credential.username, "password": credential.password}
        return
    yield {}


@contextmanager
def _private_key_file(credential: SshKey | None) -> Iterator[str | None]:
    """ssh wants a key file only its user can read; a private copy works whoever owns the original."""
    if credential is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="pypi-insiders-ssh-") as directory:
        path = Path(directory) / "key"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(credential.key)
        yield str(path)
