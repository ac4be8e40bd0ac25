"""The index never takes itself as upstream: pip's settings that name it are skipped, and said.

The original tool's README sets `PIP_INDEX_URL` to the index; a `pip config set` does the same in
a pip.conf. Taken as upstream, either would send every public name round in a loop of redirects.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pypi_insiders import config, pipconf
from pypi_insiders.errors import ConfigError
from pypi_insiders.service import live_config
from tests.conftest import ConfigMaker
from tests.support.client_fixtures import client_env, installed, run
from tests.support.distfiles import make_wheel
from tests.support.server_fixtures import (
    VENV_BIN,
    FakeUpstream,
    ThreadedServer,
    pypi_insiders,
    serve_process,
    service_env,
)

PUBLIC = "public_pkg-9.9.dist-info"


@pytest.mark.parametrize(("url", "listen", "own"), [
    ("http://localhost:31411/simple/", ("127.0.0.1", 31411), True),
    ("http://127.0.0.1:31411/simple", ("127.0.0.1", 31411), True),
    ("http://[::1]:31411/simple/", ("127.0.0.1", 31411), True),
    ("http://LOCALHOST.:31411/", ("localhost", 31411), True),
    ("http://127.0.0.1:31411/simple/", ("0.0.0.0", 31411), True),  # noqa: S104 - a listen address
    ("http://0.0.0.0:31411/simple/", ("0.0.0.0", 31411), True),  # noqa: S104
    ("http://[::1]:31411/simple/", ("::", 31411), True),
    ("http://[::ffff:127.0.0.1]:31411/simple/", ("127.0.0.1", 31411), True),
    ("http://user:pw@localhost:31411/simple/", ("127.0.0.1", 31411), True),
    ("http://192.0.2.7:31411/simple/", ("192.0.2.7", 31411), True),
    ("http://localhost:31412/simple/", ("127.0.0.1", 31411), False),
    ("http://localhost/simple/", ("127.0.0.1", 31411), False),
    ("http://localhost/simple/", ("127.0.0.1", 80), True),
    ("https://localhost/simple/", ("127.0.0.1", 80), False),
    ("http://192.0.2.8:31411/simple/", ("192.0.2.7", 31411), False),
    ("http://127.0.0.1:31411/simple/", ("192.0.2.7", 31411), False),
    ("http://mirror.invalid:31411/simple/", ("127.0.0.1", 31411), False),
    ("http://127.0.0.1:0/simple/", ("127.0.0.1", 0), False),
    ("http://[bad/simple/", ("127.0.0.1", 31411), False),
])
def test_own_upstream_every_spelling_of_the_listen_address(url: str, listen: tuple[str, int],
                                                           own: bool) -> None:
    assert pipconf.is_own_index(url, listen) is own


def _pip_conf(path: Path, url: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"[global]\nindex-url = {url}\n")
    return path


def test_own_upstream_environment_is_skipped_for_the_next_file(tmp_path: Path) -> None:
    site = _pip_conf(tmp_path / "xdg" / "pip" / "pip.conf", "http://127.0.0.1:9/mirror/")
    env = {"HOME": str(tmp_path), "XDG_CONFIG_DIRS": str(tmp_path / "xdg"),
           "PIP_INDEX_URL": "http://secret:pw@localhost:31411/simple/"}
    found = pipconf.configured_index_url(env, listen=("127.0.0.1", 31411))
    assert (found.url, found.source) == ("http://127.0.0.1:9/mirror/", str(site))
    assert found.skipped == ("PIP_INDEX_URL: http://localhost:31411/simple/ is this index itself; "
                             "skipped for pip's next source",)


def test_own_upstream_a_higher_file_is_skipped_for_a_lower_one(tmp_path: Path) -> None:
    site = _pip_conf(tmp_path / "xdg" / "pip" / "pip.conf", "http://127.0.0.1:9/mirror/")
    user = _pip_conf(tmp_path / ".config" / "pip" / "pip.conf", "http://[::1]:31411")
    env = {"HOME": str(tmp_path), "XDG_CONFIG_DIRS": str(tmp_path / "xdg")}
    found = pipconf.configured_index_url(env, listen=("127.0.0.1", 31411))
    assert (found.url, found.source) == ("http://127.0.0.1:9/mirror/", str(site))
    assert found.skipped == (
        f"{user}: http://[::1]:31411 is this index itself; skipped for pip's next source",)
    # With nothing else configured, pip's own default.
    site.unlink()
    found = pipconf.configured_index_url(env, listen=("127.0.0.1", 31411))
    assert found.source == "pip's default"
    assert len(found.skipped) == 1


def test_own_upstream_in_the_config_file_is_an_error(make_config: ConfigMaker) -> None:
    path = make_config(server={"listen": "127.0.0.1:31411"},
                       upstream={"url": "http://localhost:31411/simple/"})
    with pytest.raises(ConfigError, match=r"upstream.url: http://localhost:31411/simple/ is this index "
                                          r"itself \(listen = 127.0.0.1:31411\)"):
        config.load(str(path))


def test_own_upstream_listen_override_decides_again(monkeypatch: pytest.MonkeyPatch,
                                                    make_config: ConfigMaker) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "http://localhost:4040/simple/")
    loaded = config.load(str(make_config(server={"listen": "127.0.0.1:31411"}, upstream={"url": ""})))
    assert (loaded.upstream.url, loaded.upstream.skipped) == ("http://localhost:4040/simple/", ())
    moved = config.with_overrides(loaded, listen="127.0.0.1:4040")
    assert moved.upstream.url != "http://localhost:4040/simple/"
    assert moved.upstream.skipped
    with pytest.raises(ConfigError, match=r"--upstream: http://127\.0\.0\.1:4040/simple/ is this index"):
        config.with_overrides(loaded, listen="127.0.0.1:4040", upstream="http://127.0.0.1:4040/simple/")


def test_own_upstream_a_reload_keeps_deciding_with_the_listen_override(
        monkeypatch: pytest.MonkeyPatch, make_config: ConfigMaker) -> None:
    """`serve --listen` wins over the file on reload too, and so does the skip it implies."""
    monkeypatch.setenv("PIP_INDEX_URL", "http://localhost:4040/simple/")
    path = make_config(server={"listen": "127.0.0.1:31411"}, upstream={"url": ""})
    file_config = config.load(str(path))
    effective = config.with_overrides(file_config, listen="127.0.0.1:4040")
    reloaded = live_config.keep_overrides(file_config, effective, config.load(str(path)), warn=False)
    assert reloaded.upstream.url != "http://localhost:4040/simple/"
    assert reloaded.upstream.skipped == effective.upstream.skipped != ()


def _check_config(config_file: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*pypi_insiders(), "--config", str(config_file), "check-config"],
                          capture_output=True, text=True, timeout=60, check=False, env=service_env(env))


@pytest.mark.slow
@pytest.mark.parametrize("where", ["PIP_INDEX_URL", "pip config set"])
def test_own_upstream_install_of_a_public_name_goes_to_the_next_source(
        tmp_path: Path, make_config: ConfigMaker, free_port: int, where: str) -> None:
    """A real pip (and uv) install of a public name through an index whose pip settings name it."""
    own = f"http://localhost:{free_port}/simple/"
    public = make_wheel(tmp_path / "upstream", "public-pkg", "9.9")
    fake = FakeUpstream(projects={"public-pkg": {public.name: public.read_bytes()}})
    with ThreadedServer(fake.app) as upstream:
        home = tmp_path / "service-home"
        env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "PIP_CONFIG_FILE": "",
               "XDG_CONFIG_DIRS": str(tmp_path / "xdg")}
        site = _pip_conf(tmp_path / "xdg" / "pip" / "pip.conf", upstream.url + "simple/")
        if where == "PIP_INDEX_URL":
            env["PIP_INDEX_URL"] = own
        else:
            run([str(VENV_BIN / "python"), "-m", "pip", "config", "--user", "set", "global.index-url", own],
                tmp_path, service_env(env))
            assert (home / ".config" / "pip" / "pip.conf").read_text().count(own) == 1
        config_file = make_config(server={"listen": f"127.0.0.1:{free_port}"},
                                  upstream={"url": "", "fallback": "redirect"})
        checked = _check_config(config_file, env)
        assert checked.returncode == 0, checked.stderr
        assert f"upstream: {upstream.url}simple/ ({site})" in checked.stdout
        source = "PIP_INDEX_URL" if where == "PIP_INDEX_URL" else str(home / ".config" / "pip" / "pip.conf")
        assert f"warning: {source}: {own} is this index itself; skipped" in checked.stderr
        with serve_process(config_file, env=env) as served:
            client = tmp_path / "client"
            run([str(VENV_BIN / "python"), "-m", "pip", "install", "--no-cache-dir", "--no-input",
                 "--index-url", own, "--target", str(client / "pip"), "public-pkg"],
                tmp_path, client_env(client))
            assert installed(client / "pip") == {PUBLIC}
            run([str(VENV_BIN / "uv"), "pip", "install", "--no-config", "--index-url", own,
                 "--target", str(client / "uv"), "public-pkg"], tmp_path, client_env(client))
            assert installed(client / "uv") == {PUBLIC}
            assert f"{source}: {own} is this index itself" in served.output()
