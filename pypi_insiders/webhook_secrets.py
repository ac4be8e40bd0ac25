"""Webhook secrets: the files `webhook_secret = "NAME"` names, read by the index, made by `repos hook`.

They live in a directory of their own (`webhooks.secrets_dir`, /etc/pypi-insiders/webhook-secrets),
never in the git credentials directory: the index gets these and nothing else. Under systemd the
index unit loads that directory with `LoadCredential=hook:DIR`, so a root-only (0600) file
reaches it as `$CREDENTIALS_DIRECTORY/hook_NAME`; outside systemd (or with a 0640 file of group
pypi-insiders) the directory itself is read. One secret a line: two lines during a rotation,
both accepted. A file any user can read, an empty one, or one line too short is refused.
"""

from __future__ import annotations

import os
import secrets
import shlex
import stat
from pathlib import Path

from pypi_insiders.config import Config, RepoConfig
from pypi_insiders.errors import CredentialError
from pypi_insiders.files import create_exclusive

SYSTEMD_PREFIX = "hook_"  # LoadCredential=hook:DIR names each file hook_<file name> (systemd 252)
MIN_LENGTH = 16  # a secret shorter than this is guessable by the failed-attempt limit's clients
_MAX_SIZE = 4096
_MAX_LINES = 4  # the current secret, the next during a rotation, and GitLab signing tokens


def candidates(config: Config, name: str) -> list[Path]:
    """Where a secret named `name` may be, first match wins: systemd's private copy, then the directory."""
    systemd_dir = os.environ.get("CREDENTIALS_DIRECTORY", "")
    found = [Path(systemd_dir) / f"{SYSTEMD_PREFIX}{name}"] if systemd_dir else []
    found.append(config.webhooks.secrets_dir / name)
    return found


def read(config: Config, repo: RepoConfig) -> tuple[bytes, ...]:
    """The secrets a delivery for `repo` may be signed with; CredentialError naming the key at fault."""
    owner = f"repos.{repo.key}.webhook_secret"
    if repo.webhook_secret is None:
        msg = f"{owner}: not set"
        raise CredentialError(msg)
    for path in candidates(config, repo.webhook_secret):
        try:
            return _parse(path, owner)
        except FileNotFoundError:
            continue
    where = " or ".join(str(p) for p in candidates(config, repo.webhook_secret))
    msg = f"{owner}: {repo.webhook_secret!r} not found in {where}"
    raise CredentialError(msg)


def _parse(path: Path, owner: str) -> tuple[bytes, ...]:
    try:
        with path.open("rb") as stream:
            info = os.fstat(stream.fileno())
            if info.st_mode & stat.S_IROTH:
                msg = f"{owner}: {path} is readable by every user; chmod o-rwx {shlex.quote(str(path))}"
                raise CredentialError(msg)
            data = stream.read(_MAX_SIZE + 1)
    except (FileNotFoundError, CredentialError):
        raise
    except OSError as error:
        msg = f"{owner}: cannot read {path}: {error.strerror}"
        raise CredentialError(msg) from None
    lines = [line.strip() for line in data.splitlines() if line.strip()]
    if len(data) > _MAX_SIZE or len(lines) > _MAX_LINES:
        msg = f"{owner}: {path} must hold one secret a line, at most {_MAX_LINES}"
        raise CredentialError(msg)
    if not lines:
        msg = f"{owner}: {path} is empty"
        raise CredentialError(msg)
    if any(len(line) < MIN_LENGTH for line in lines):
        msg = f"{owner}: {path}: a secret is shorter than {MIN_LENGTH} characters"
        raise CredentialError(msg)
    return tuple(lines)


def check(config: Config) -> list[str]:
    """For `check-config`: every secret named is readable and sound (errors), and webhooks
    enabled without any secret (a warning, prefixed so): each one line naming the key."""
    problems: list[str] = []
    named = [repo for repo in config.repos if repo.webhook_secret is not None]
    if not config.webhooks.enabled:  # nothing reads them: a missing file is no problem yet
        return problems
    if not named:
        problems.append("warning: webhooks.enabled is true but no repository has a webhook_secret: "
                        "every delivery gets 404 (see `pypi-insiders repos hook KEY`)")
    for repo in named:
        try:
            read(config, repo)
        except CredentialError as error:
            problems.append(str(error))
    return problems


def default_name(repo: RepoConfig) -> str:
    """The file `repos hook` makes when the repository names none: `hook-` and its readable key."""
    readable = "".join(c if c.isalnum() or c in "._-" else "-" for c in repo.key).strip(".-")
    return f"hook-{readable or 'repo'}"


def create(config: Config, name: str) -> str | None:
    """A new random secret in `secrets_dir/name` (0600), returned once; None when the file exists."""
    path = config.webhooks.secrets_dir / name
    secret = secrets.token_hex(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        made = create_exclusive(path, f"{secret}\n".encode(), 0o600)
    except OSError as error:
        msg = f"webhooks.secrets_dir: cannot write {path}: {error.strerror or error}"
        raise CredentialError(msg) from None
    return secret if made else None
