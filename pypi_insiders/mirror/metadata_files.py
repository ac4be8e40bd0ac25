"""A distribution's `.metadata` file (PEP 658): fetched whole (it is small), checked against the
page's `core-metadata` hash, then kept beside the distribution's own bytes."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Final

from packaging.utils import NormalizedName

from pypi_insiders.config import UpstreamConfig
from pypi_insiders.files import atomic_write, exclusive_lock
from pypi_insiders.http_client import Credentials, HttpClient, HttpError
from pypi_insiders.mirror.layout import METADATA, MirrorLayout
from pypi_insiders.mirror.page import MirroredFile
from pypi_insiders.mirror.transfer import FetchFailed, journal

_MAX_METADATA: Final = 16 * 1024 * 1024


def fetch_metadata(layout: MirrorLayout, settings: UpstreamConfig, client: HttpClient, *,
                   name: NormalizedName, item: MirroredFile, auth: Credentials | None) -> Path:
    """The file's `.metadata`, fetched whole and checked against the page's hash, then kept."""
    assert item.core_metadata is not None  # noqa: S101 - the route checked it
    final = layout.file(item.sha256, item.filename + METADATA)
    if final.is_file():
        return final
    layout.locks.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(layout.lock(item.sha256, METADATA)):
        if final.is_file():
            return final
        if settings.offline:
            msg = "not cached here (upstream.offline)"
            raise FetchFailed(msg)
        url = item.url + METADATA
        try:
            response = client.get(url, timeout=settings.timeout, max_bytes=_MAX_METADATA, auth=auth)
        except HttpError as error:
            raise FetchFailed(str(error)) from None
        if response.status != 200:
            msg = f"{response.url} answered {response.status}"
            raise FetchFailed(msg)
        found = hashlib.sha256(response.body).hexdigest()
        if found != item.core_metadata:
            msg = f"{response.url}: sha256 {found}, the page says {item.core_metadata}"
            journal(logging.ERROR, "refused", name, item, "mismatch", msg)
            raise FetchFailed(msg)
        final.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(final, response.body, 0o644)
        return final
