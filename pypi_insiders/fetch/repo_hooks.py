"""`pypi-insiders repos hook KEY`: what a forge needs to call the index when a tag is pushed.

It prints the hook's URL, makes the repository's secret file when it is missing (0600, random,
printed this once and never again), names it in the repository's drop-in when `repos add`
wrote one (else says which line to add), and prints the setup steps of each forge.
"""

from __future__ import annotations

import tomllib
from urllib.parse import quote

from pypi_insiders import webhook_secrets
from pypi_insiders.config import Config, RepoConfig
from pypi_insiders.errors import UsageError
from pypi_insiders.fetch import repos
from pypi_insiders.files import atomic_write

HOOKS_PATH = "/-/hooks/"


def hook_url(config: Config, repo: RepoConfig, base: str | None) -> str:
    """The URL on the listen address, or under `base` (the public URL a reverse proxy answers on)."""
    if base is None:
        host = config.server.host
        host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 - a wildcard bind
        base = f"http://[{host}]:{config.server.port}" if ":" in host else f"http://{host}:{config.server.port}"
    return f"{base.rstrip('/')}{HOOKS_PATH}{quote(repo.key, safe='/')}"


def _name_in_dropin(config: Config, repo: RepoConfig, name: str) -> bool:
    """Add `webhook_secret` to the drop-in `repos add` wrote; False when the table is elsewhere."""
    path = repo.source_file
    if path is None or path.parent != config.fetch.repos_dir:
        return False
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    tables = data.get("repos", {})
    table = tables.get(repo.key) if isinstance(tables, dict) and len(tables) == 1 else None
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        return False
    try:
        atomic_write(path, repos.render_dropin(repo.key, {**table, "webhook_secret": name}).encode())
    except OSError as error:
        msg = f"fetch.repos_dir: cannot write {path}: {error.strerror or error}"
        raise UsageError(msg) from None
    return True


STEPS = """
Set it up on the forge (content type JSON; the secret above):
  GitHub:    Settings > Webhooks > Add webhook: Payload URL, Secret; events: "Let me select
             individual events" > "Branch or tag creation" (or "Just the push event").
  GitLab:    Settings > Webhooks > Add new webhook: URL, Secret token; trigger: "Tag push events" only.
             Where GitLab offers a signing token (whsec_...), add it as a second line of the
             secret file: the body is then signed and a replay refused after five minutes.
  Forgejo/Gitea: Settings > Webhooks > Add webhook > Forgejo (Gitea): Target URL, POST,
             application/json, Secret; trigger: "Custom events" > "Create" (or "Push").
  Bitbucket: Repository settings > Webhooks > Add webhook: URL, Secret; trigger: "Repository push".
Then check with the forge's "Test"/"Redeliver" button: a ping answers 200, a tag push 202.
With webhooks.enabled = true in the config; a new secret needs: systemctl restart pypi-insiders-index
(the service loads the secrets at start)."""


def cli_hook(config: Config, key: str, *, base_url: str | None = None) -> int:
    repo = config.repo(key)
    if repo is None:
        msg = f"unknown repository {key!r} (see `pypi-insiders repos list`)"
        raise UsageError(msg)
    name = repo.webhook_secret or webhook_secrets.default_name(repo)
    secret = webhook_secrets.create(config, name)
    path = config.webhooks.secrets_dir / name
    print(f"URL:    {hook_url(config, repo, base_url)}")
    if secret is not None:
        print(f"secret: {secret}")
        print(f"        (shown this once; kept in {path}, mode 0600)")
    else:
        print(f"secret: in {path} (not shown again; delete the file and run this again for a new one)")
    if repo.webhook_secret is None:
        if _name_in_dropin(config, repo, name):
            print(f'added webhook_secret = "{name}" to {repo.source_file}')
        else:
            where = repo.source_file or config.path or "the config file"
            print(f'add webhook_secret = "{name}" to [repos."{repo.key}"] in {where}')
    if not config.webhooks.enabled:
        print("webhooks are off: set [webhooks] enabled = true in the config")
    print(STEPS.strip("\n"))
    return 0
