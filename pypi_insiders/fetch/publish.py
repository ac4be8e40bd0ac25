"""Where verified builds go: into the local store, or to a remote index's legacy upload API.

The store is the default: `Store.add` links each file into place atomically, never
overwrites, records the filename and refuses one published before, and the index's watcher
publishes it. With `fetch.publish = "upload"` each file is POSTed like twine does; a file the
target already has counts as published, so a run that was killed after some uploads simply
carries on.
"""

from __future__ import annotations

import email.parser
import hashlib
import logging
import secrets
from pathlib import Path

from pypi_insiders import provenance
from pypi_insiders.config import Config
from pypi_insiders.errors import BuildError, FilenameReusedError, StoreError
from pypi_insiders.fetch import credentials
from pypi_insiders.fetch.builder import BuiltFile
from pypi_insiders.http_client import Credentials, HttpClient, HttpError, display_url
from pypi_insiders.metadata import read_core_metadata
from pypi_insiders.provenance import Origin
from pypi_insiders.store import Store, parse_filename

log = logging.getLogger(__name__)


def publish(config: Config, files: list[BuiltFile], repo_key: str, origin: Origin | None = None) -> list[str]:
    """Publish every file (sdist first, so a wheel never appears without its source); names back.

    `origin`: the repository, tag and commit, recorded for the files put into the store.
    """
    ordered = sorted(files, key=lambda f: f.path.name.endswith(".whl"))
    names = [f.path.name for f in ordered]
    if origin is not None and config.fetch.publish == "store":  # before the files appear
        provenance.record(config.paths.state, names, origin)
    store = Store.for_config(config)
    with HttpClient(pool_size=1) as client:  # the wheel follows the sdist on the same connection
        for built in ordered:
            _publish_one(config, store, built, repo_key, client)
    return names


def _publish_one(config: Config, store: Store, built: BuiltFile, repo_key: str, client: HttpClient) -> None:
    if config.fetch.publish == "upload":
        upload(config, built.path, client)
    else:
        add_to_store(store, built, repo_key)
    log.info("%s: published %s", repo_key, built.path.name,
             extra={"REPO": repo_key, "PROJECT": built.name, "FILE": built.path.name,
                    "VERSION": str(built.version), "STEP": "publish"})


def add_to_store(store: Store, built: BuiltFile, repo_key: str) -> None:
    """A file of that name with other bytes was published before (a run killed between the
    sdist and the wheel, or lost state): it stays, as published files always do. A name
    published before whose file was deleted (by `remove` or by hand) is not published again."""
    try:
        store.add(built.path.name, built.path, project=built.name)
    except FilenameReusedError as error:
        log.warning("%s: not published again: %s", repo_key, error,
                    extra={"REPO": repo_key, "PROJECT": built.name, "FILE": built.path.name,
                           "STEP": "publish"})
    except StoreError as error:
        log.warning("%s: kept the file already in the store: %s", repo_key, error,
                    extra={"REPO": repo_key, "PROJECT": built.name, "FILE": built.path.name,
                           "STEP": "publish"})


def _form(fields: list[tuple[str, str]], file_path: Path, boundary: str) -> bytes:
    parts: list[bytes] = []
    for name, value in fields:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{value}\r\n".encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="content"; '
                 f'filename="{file_path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode())
    parts.append(file_path.read_bytes())
    parts.append(f"\r\n--{boundary}--\r\n".encode())
    return b"".join(parts)


def upload_fields(path: Path) -> list[tuple[str, str]]:
    """The legacy API's form: what twine sends for one file, from the file's own metadata."""
    metadata = read_core_metadata(path)
    headers = email.parser.BytesParser().parsebytes(metadata.raw, headersonly=True)
    wheel = parse_filename(path.name).kind == "wheel"
    fields = [(":action", "file_upload"), ("protocol_version", "1"),
              ("name", str(headers.get("Name"))), ("version", str(metadata.version)),
              ("metadata_version", str(headers.get("Metadata-Version", "2.1"))),
              ("filetype", "bdist_wheel" if wheel else "sdist"),
              ("pyversion", "py3" if wheel else "source"),
              ("sha256_digest", hashlib.sha256(path.read_bytes()).hexdigest())]
    if metadata.requires_python:
        fields.append(("requires_python", metadata.requires_python))
    return fields


def upload(config: Config, path: Path, client: HttpClient) -> None:
    url = config.fetch.upload_url
    if url is None:
        msg = 'fetch.publish is "upload" but fetch.upload_url is not set'
        raise BuildError(msg)
    boundary = secrets.token_hex(16)
    body = _form(upload_fields(path), path, boundary)
    auth = credentials.for_upload(config)
    try:
        response = client.request("POST", url, body=body, timeout=config.fetch.fetch_timeout,
                                  headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
                                  auth=None if auth is None else Credentials(auth.username, auth.password))
    except HttpError as error:
        msg = f"upload of {path.name} failed: {error}"
        raise BuildError(msg) from None
    if 200 <= response.status < 300:
        return
    text = response.text()
    if response.status in (400, 409) and "exist" in text.lower():
        # Like twine's --skip-existing: a version the target has is published, even when a
        # rebuild's bytes differ (the target never replaces a file, and neither do we).
        level = logging.WARNING if "different" in text.lower() else logging.INFO
        log.log(level, "%s: already at %s (%s)", path.name, display_url(url), text,
                extra={"PROJECT": parse_filename(path.name).project, "FILE": path.name, "STEP": "publish"})
        return
    msg = f"upload of {path.name} to {display_url(url)} refused: HTTP {response.status} {text}"
    raise BuildError(msg)
