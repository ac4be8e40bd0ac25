"""`fetch.publish = "upload"` through the one HTTP client, against our own index's upload API on loopback:
accepted, already there, refused and unreachable, with the token never in a message; and
`fetch.publish = "store"` through the store's registry.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

from pypi_insiders import config, directories
from pypi_insiders.config import Config
from pypi_insiders.errors import BuildError
from pypi_insiders.fetch import publish
from pypi_insiders.fetch.builder import BuiltFile
from pypi_insiders.http_client import HttpClient
from pypi_insiders.state_layout import StateLayout
from pypi_insiders.web import passwords
from tests.conftest import ConfigMaker
from tests.support.distfiles import make_wheel
from tests.support.upload_fixtures import running_app, tree

TOKEN = "upl0ad-t0ken-value"


@pytest.fixture
def target(make_config: ConfigMaker) -> Iterator[tuple[Config, int]]:
    """Our index with uploads on and user `robot`; the config file is shared with the fetch side."""
    loaded = config.load(str(make_config(upload={"enabled": True})))
    directories.prepare(loaded, create=True)
    loaded.upload.users_file.write_text(f"robot:{passwords.hash_secret(TOKEN)}\n")
    with running_app(loaded) as port:
        yield loaded, port


def _fetch_config(make_config: ConfigMaker, tmp_path: Path, url: str, token: str) -> Config:
    credentials = tmp_path / "credentials"
    credentials.mkdir(exist_ok=True)
    (credentials / "upload-token").write_text(token + "\n")
    (credentials / "upload-token").chmod(0o600)
    return config.load(str(make_config(
        upload={"enabled": True},
        fetch={"publish": "upload", "upload_url": url, "upload_username": "robot",
               "upload_credential": "upload-token"})))


def test_publish_upload_reaches_the_store_and_a_second_time_is_fine(
        make_config: ConfigMaker, tmp_path: Path, target: tuple[Config, int]) -> None:
    served, port = target
    loaded = _fetch_config(make_config, tmp_path, f"http://127.0.0.1:{port}/legacy/", TOKEN)
    wheel = make_wheel(tmp_path / "dist", "demo", "1.0")
    with HttpClient() as client:
        publish.upload(loaded, wheel, client)
        publish.upload(loaded, wheel, client)  # identical: the target says so, that is published
    assert tree(served.paths.store) == [f"demo/{wheel.name}"]


def test_publish_upload_refused_is_one_line_without_the_token(
        make_config: ConfigMaker, tmp_path: Path, target: tuple[Config, int]) -> None:
    served, port = target
    loaded = _fetch_config(make_config, tmp_path, f"http://127.0.0.1:{port}/legacy/", "wrong-" + TOKEN)
    wheel = make_wheel(tmp_path / "dist", "demo", "1.0")
    with HttpClient() as client, pytest.raises(BuildError) as caught:
        publish.upload(loaded, wheel, client)
    assert str(caught.value) == (f"upload of {wheel.name} to http://127.0.0.1:{port}/legacy/ refused: "
                                 "HTTP 403 invalid credentials for user 'robot'")
    assert tree(served.paths.store) == []


def test_publish_upload_to_nowhere_names_the_url(make_config: ConfigMaker, tmp_path: Path) -> None:
    loaded = _fetch_config(make_config, tmp_path, f"http://robot:{TOKEN}@127.0.0.1:9/legacy/", TOKEN)
    wheel = make_wheel(tmp_path / "dist", "demo", "1.0")
    with HttpClient() as client, pytest.raises(BuildError) as caught:
        publish.upload(loaded, wheel, client)
    assert str(caught.value).startswith(f"upload of {wheel.name} failed: http://127.0.0.1:9/legacy/: "
                                        "cannot connect")
    assert TOKEN not in str(caught.value)


def test_publish_to_the_store_never_brings_back_a_file_deleted_by_hand(
        make_config: ConfigMaker, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A rebuild after lost state makes other bytes under the same name: the name stays retired."""
    loaded = config.load(str(make_config()))
    first = make_wheel(tmp_path / "first", "Demo-Pkg", "1.0")
    rebuilt = make_wheel(tmp_path / "rebuilt", "Demo-Pkg", "1.0", requires=["attrs"])
    assert rebuilt.name == first.name
    assert rebuilt.read_bytes() != first.read_bytes()

    def built(path: Path) -> BuiltFile:
        return BuiltFile(path, canonicalize_name("demo-pkg"), Version("1.0"))

    assert publish.publish(loaded, [built(first)], "demo") == [first.name]
    published = loaded.paths.store / "demo-pkg" / first.name
    assert published.read_bytes() == first.read_bytes()
    assert first.name in StateLayout(loaded.paths.state).published_filenames.read_text().splitlines()
    published.unlink()  # by hand, not with `pypi-insiders remove`
    publish.publish(loaded, [built(rebuilt)], "demo")
    assert tree(loaded.paths.store) == []
    assert f"{first.name}: this filename was used before and cannot be reused" in caplog.text
