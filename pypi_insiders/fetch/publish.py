"""Where verified builds go: into the local store, or to a remote index's legacy upload API.

The store is the default: `Store.add` links each file into place atomically and never
overwrites, and the index's watcher publishes it. With `fetch.publish = "upload"` each file is
POSTed like twine does; a file the target already has counts as published, so a run that was
killed after some uploads simply carries on.
"""

from __future__ import annotations

import base64
import email.parser
import hashlib
import logging
import secrets
import urllib.error
import urllib.request
from pathlib import Path

from pypi_insiders.config import Config
from pypi_insiders.errors import BuildError, StoreError
from pypi_insiders.fetch import credentials
from pypi_insiders.fetch.builder import BuiltFile
from pypi_insiders.metadata import read_core_metadata
from pypi_insiders.store import Store, parse_filename

log = logging.getLogger(__name__)


def publish(config: Config, files: list[BuiltFile], repo_key: str) -> list[str]:
    """Publish every file (sdist first, so a wheel never appears without its source); names back."""
    ordered = sorted(files, key=lambda f: f.path.name.endswith(".whl"))
    for built in ordered:
        if config.fetch.publish == "upload":
            upload(config, built.path)
        else:
            add_to_store(Store(config.paths.store), built, repo_key)
        log.info("%s: published %s", repo_key, built.path.name,
                 extra={"REPO": repo_key, "FILE": built.path.name, "VERSION": str(built.version),
                        "STEP": "publish"})
    return [f.path.name for f in ordered]


def add_to_store(store: Store, built: BuiltFile, repo_key: str) -> None:
    """A file of that name with other bytes was published before (a run killed between the
    sdist and the wheel, or lost state): it stays, as published files always do."""
    try:
        store.add(built.path.name, built.path, project=built.name)
    except StoreError as error:
        log.warning("%s: kept the file already in the store: %s", repo_key, error,
                    extra={"REPO": repo_key, "FILE": built.path.name, "STEP": "publish"})


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


def upload(config: Config, path: Path) -> None:
    url = config.fetch.upload_url
    if url is None:
        msg = 'fetch.publish is "upload" but fetch.upload_url is not set'
        raise BuildError(msg)
    boundary = secrets.token_hex(16)
    body = _form(upload_fields(path), path, boundary)
    request = urllib.request.Request(url, data=body, method="POST", headers={  # noqa: S310 - http(s), checked by config
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    auth = credentials.for_upload(config)
    if auth is not None:
        token = base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=config.fetch.fetch_timeout):  # noqa: S310 - configured http(s) URL
            return
    except urllib.error.HTTPError as error:
        text = error.read(2000).decode("utf-8", "replace").strip()
        if error.code in (400, 409) and "exist" in text.lower():
            # Like twine's --skip-existing: a version the target has is published, even when a
            # rebuild's bytes differ (the target never replaces a file, and neither do we).
            level = logging.WARNING if "different" in text.lower() else logging.INFO
            log.log(level, "%s: already at %s (%s)", path.name, url, " ".join(text.split())[:200],
                    extra={"FILE": path.name, "STEP": "publish"})
            return
        msg = (
            f"upload of {path.name} to {url} refused: HTTP {error.code} "
                         f"{' '.join(text.split())[:200]}"
        )
        raise BuildError(msg) from None
    except (urllib.error.URLError, OSError) as error:
        msg = f"upload of {path.name} to {url} failed: {error}"
        raise BuildError(msg) from None
