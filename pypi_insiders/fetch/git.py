"""Bare git mirrors of the watched repositories, kept current with dulwich; tags peeled to commits.

The remote is asked for its refs first: when every tag it advertises is already in the mirror,
nothing else is requested, so a timer run over many unchanged repositories costs one small
request each. Only tag objects are wanted (never branches), which is all a build needs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dulwich.client import (
    GitClient,
    HTTPUnauthorized,
    SubprocessSSHVendor,
    default_urllib3_manager,
    get_transport_and_path,
)
from dulwich.errors import GitProtocolError, NotGitRepository
from dulwich.object_store import peel_sha
from dulwich.objects import Commit
from dulwich.repo import Repo
from urllib3.util.retry import Retry

from pypi_insiders.config import Config, RepoConfig
from pypi_insiders.errors import CredentialError, FetchError
from pypi_insiders.fetch import credentials
from pypi_insiders.http_client import display_url
from pypi_insiders.state_layout import CacheLayout
from pypi_insiders.wording import counted

log = logging.getLogger(__name__)

_TAGS = b"refs/tags/"
# Redirects followed, failures reported at once: urllib3's default retried a failed connection
# three times, so a host name that takes a resolver 13 s to refuse cost 53 s; the fetcher's own
# back-off is the retry.
_RETRIES = Retry(total=None, connect=0, read=0, status=0, redirect=5, raise_on_redirect=True)
# What urllib3 puts in its messages for the connection object: `<urllib3.connection.HTTPConnection
# object at 0x7f...>: `, alone or inside a wrapper's repr.
_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>:?\s*")


@dataclass(frozen=True)
class FetchOutcome:
    tags: dict[str, str]  # tag name -> commit sha, as the mirror holds them now
    fetched: bool  # whether objects were requested from the remote at all
    changed: int  # tag refs added, moved or removed in the mirror


def scheme_of(url: str) -> str:
    """The transport dulwich will use: ssh also for `git@host:path`, "file" for local paths."""
    parts = urlsplit(url)
    if parts.scheme in ("ssh", "git+ssh"):
        return "ssh"
    if parts.scheme:
        return parts.scheme
    if ":" in url.split("/", 1)[0]:
        return "ssh"
    return "file"


def mirror_path(config: Config, key: str) -> Path:
    return CacheLayout(config.paths.cache).mirror(key)


def open_mirror(path: Path) -> Repo:
    """The bare mirror, made when missing or when a killed run left it half-initialised."""
    try:
        return Repo(str(path))
    except NotGitRepository:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            log.warning("%s: not a usable git repository, starting it again", path, extra={"FILE": str(path)})
            _remove_tree(path)
        made: Repo = _dulwich(Repo).init_bare(str(path), mkdir=True)
        return made


def _remove_tree(path: Path) -> None:
    import shutil  # noqa: PLC0415 - only needed to repair a broken mirror

    shutil.rmtree(path)


def client_for(config: Config, repo: RepoConfig, extra: dict[str, Any]) -> tuple[GitClient, str]:
    kwargs = dict(extra)
    scheme = scheme_of(repo.url)
    if scheme in ("http", "https"):
        pool = default_urllib3_manager(None, base_url=repo.url, timeout=config.fetch.fetch_timeout,
                                       retries=_RETRIES)
        kwargs["pool_manager"] = _closing_responses(pool)
    elif scheme == "ssh":
        kwargs["vendor"] = SubprocessSSHVendor()
    try:
        return get_transport_and_path(repo.url, **kwargs)
    except ValueError as error:
        msg = f"repository {repo.key}: unusable URL {display_url(repo.url)}: {error}"
        raise FetchError(msg) from None


def _dulwich(thing: object) -> Any:  # noqa: ANN401 - the one typed/untyped boundary
    """dulwich 0.21 is only partly annotated; its untyped calls go through here, on purpose."""
    return thing


def _closing_responses(pool: Any) -> Any:  # noqa: ANN401 - urllib3 1.26 is untyped
    """Remember every response: dulwich does not close one it raises about (a 401), we do."""
    request = pool.request
    pool.responses = []

    def remembering(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
        response = request(*args, **kwargs)
        pool.responses.append(response)
        return response

    pool.request = remembering
    return pool


def remote_tags(refs: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """Tag refs as advertised, without the peeled `^{}` lines some servers add."""
    return {name: sha for name, sha in refs.items()
            if name.startswith(_TAGS) and not name.endswith(b"^{}")}


def update(config: Config, repo: RepoConfig) -> FetchOutcome:
    """Bring the mirror's tags up to date with the remote; fetch objects only for new tags."""
    with credentials.transport_kwargs(config, repo, scheme_of(repo.url)) as extra:
        client, path = client_for(config, repo, extra)
        try:
            with _translated_errors(config, repo):
                return _update_mirror(config, repo, client, path)
        finally:
            pool = getattr(client, "pool_manager", None)
            if pool is not None:
                for response in getattr(pool, "responses", ()):
                    response.close()
                pool.clear()  # close the HTTP connections now, not when garbage collected


def _update_mirror(config: Config, repo: RepoConfig, client: GitClient, path: str) -> FetchOutcome:
    remote = remote_tags(_dulwich(client).get_refs(path))
    mirror = open_mirror(mirror_path(config, repo.key))
    try:
        new_tags = [sha for sha in remote.values() if sha not in mirror.object_store]
        missing = sorted(set(new_tags))  # fewer: two tags may name one commit
        if missing:
            log.info("%s: fetching %s", repo.key, counted(len(new_tags), "new tag"),
                     extra={"REPO": repo.key, "STEP": "fetch"})
            client.fetch(path, mirror, determine_wants=_wants(missing))
        changed = _set_tag_refs(mirror, remote)
        return FetchOutcome(peeled_tags(mirror), bool(missing), changed)
    finally:
        _dulwich(mirror).close()


def _wants(missing: list[bytes]) -> Callable[[dict[bytes, bytes], int | None], list[bytes]]:
    def determine_wants(_refs: dict[bytes, bytes], _depth: int | None = None) -> list[bytes]:
        return missing
    return determine_wants


def _set_tag_refs(mirror: Repo, remote: dict[bytes, bytes]) -> int:
    """Make the mirror's tags exactly the remote's (moved and deleted tags included)."""
    refs = _dulwich(mirror.refs)
    local = {_TAGS + name: refs[_TAGS + name] for name in refs.keys(_TAGS)}
    changed = 0
    for name, sha in remote.items():
        if local.get(name) != sha:
            refs[name] = sha
            changed += 1
    for name in local.keys() - remote.keys():
        del refs[name]
        changed += 1
    return changed


def peeled_tags(mirror: Repo) -> dict[str, str]:
    """Tag name -> commit sha; tags of trees or blobs, or with names not UTF-8, are left out."""
    tags: dict[str, str] = {}
    for name in _dulwich(mirror.refs).keys(_TAGS):
        try:
            _tag, target = peel_sha(mirror.object_store, mirror.refs[_TAGS + name])
            if isinstance(target, Commit):
                tags[name.decode()] = target.id.decode()
        except (KeyError, UnicodeDecodeError):
            continue
    return tags


@contextmanager
def _translated_errors(config: Config, repo: RepoConfig) -> Iterator[None]:
    """dulwich's and the network's exceptions become one line naming the repository."""
    where = f"repository {repo.key} ({display_url(repo.url)})"
    try:
        yield
    except HTTPUnauthorized:
        what = "refused the credentials" if repo.credential else "needs credentials"
        msg = f"{where}: the server {what} (HTTP 401)"
        raise CredentialError(msg) from None
    except NotGitRepository:
        msg = f"{where}: not found or not a git repository"
        raise FetchError(msg) from None
    except (GitProtocolError, OSError) as error:
        message, full = _one_line(error), str(error)  # ssh's banner can push the cause past 500
        if "Permission denied (publickey" in full:
            what = f"refused the SSH key {repo.credential!r}" if repo.credential else "needs an SSH key"
            msg = f"{where}: the server {what}"
            raise CredentialError(msg) from None
        if "Host key verification failed" in full or "HOST IDENTIFICATION HAS CHANGED" in full:
            msg = (
                f"{where}: the server's SSH host key is not the one recorded in "
                             f"{credentials.known_hosts_path(config)}; if the change is expected, remove the "
                             "host's line there"
            )
            raise FetchError(msg) from None
        msg = f"{where}: cannot fetch: {message}"
        raise FetchError(msg) from None
    except Exception as error:
        if not _is_urllib3_error(error):
            raise
        msg = f"{where}: cannot fetch: {_urllib3_reason(error)}"
        raise FetchError(msg) from None


def _urllib3_reason(error: BaseException) -> str:
    """The innermost cause without urllib3's wrapping ("HTTPSConnectionPool(...): Max retries
    exceeded with url ... (Caused by NewConnectionError('<... object at 0x...>: Failed to ...'))",
    or a ProxyError holding that), and without the connection object's repr."""
    cause: BaseException = error
    for _depth in range(5):
        inner = getattr(cause, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((arg for arg in cause.args if isinstance(arg, BaseException)), None)
        if inner is None:
            break
        cause = inner
    return _OBJECT_REPR.sub("", _one_line(cause))


def _one_line(error: BaseException) -> str:
    return (" ".join(str(error).split()) or type(error).__name__)[:500]


def _is_urllib3_error(error: BaseException) -> bool:
    return type(error).__module__.startswith("urllib3")
