"""Config parsing and validation: every error names the file and the dotted key."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from pypi_insiders import config, pipconf
from pypi_insiders.cli import main
from pypi_insiders.config import locations
from pypi_insiders.errors import ConfigError
from tests.conftest import ConfigMaker, toml_value
from tests.support import git_fixtures as g


def test_config_defaults_from_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locations, "SYSTEM_CONFIG", Path("/nonexistent/config.toml"))
    loaded = config.load(None)
    assert loaded.path is None
    assert (loaded.server.host, loaded.server.port) == ("127.0.0.1", 31411)
    assert loaded.upstream.fallback == "redirect"
    assert loaded.upload.enabled is False


@pytest.mark.parametrize("section", ["server", "index", "upstream", "upload", "fetch", "access"])
def test_config_defaults_are_the_models_own(section: str) -> None:
    """The parsers read their defaults from the dataclasses: an empty file gives exactly those."""
    loaded = getattr(config.from_mapping({}, None), section)
    defaults = {f.name: f.default for f in dataclasses.fields(loaded) if f.default is not dataclasses.MISSING}
    assert defaults
    assert {name: getattr(loaded, name) for name in defaults} == defaults


def test_config_repository_defaults_are_the_models_own(tmp_path: Path) -> None:
    repo = config.from_mapping({"repos": {"demo": {"url": str(tmp_path)}}}, None).repos[0]
    defaults = {f.name: f.default for f in dataclasses.fields(repo) if f.default is not dataclasses.MISSING}
    assert {name: getattr(repo, name) for name in defaults} == defaults


def test_config_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "config.toml"
    path.parent.mkdir()
    path.write_text('[paths]\ndata = "../var"\n[upstream]\nurl = "http://127.0.0.1:1/simple"\n')
    loaded = config.load(str(path))
    assert loaded.paths.store == tmp_path / "etc" / ".." / "var" / "store"
    assert loaded.upstream.url == "http://127.0.0.1:1/simple/"
    assert loaded.upstream.url_source == "config"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[server]\nlisten = "nowhere"\n', r"server\.listen: expected HOST:PORT"),
        ('[server]\nlisten = "example:80"\n', r"server\.listen: expected an IP address"),
        ('[server]\nthreads = "8"\n', r"server\.threads: expected an integer"),
        ('[server]\ntrusted_proxy = "*"\n', r"server\.trusted_proxy: not an IP address: '\*'"),
        ('[server]\nlisen = "127.0.0.1:1"\n', r"server\.lisen: unknown key \(did you mean 'listen'\?\)"),
        ('[upstream]\nfallback = "maybe"\n', r"upstream\.fallback: must be one of"),
        ('[upstream]\nurl = "ftp://x/"\n', r"upstream\.url: not an http\(s\) URL"),
        ('[serve]\n', r"serve: unknown key \(did you mean 'server'\?\)"),
        ('[repos."a/b"]\nbuild = "all"\n', r'repos\."a/b"\.url: missing'),
        ('[repos.x]\nurl = "file:///r"\ntag_pattern = "("\n', r"repos\.x\.tag_pattern: not a regular"),
        ('[repos.x]\nurl = "file:///r"\nmin_version = "one"\n', r"repos\.x\.min_version: not a PEP 440"),
        ('[repos.x]\nurl = "file:///r"\nsubdirectory = "../up"\n', r"repos\.x\.subdirectory: must be"),
        ('[repos.x]\nurl = "file:///r"\ncredential = "../../etc/shadow"\n', r"repos\.x\.credential:"),
        ('[yank.foo]\n"1.0" = 3\n', r"yank\.foo\.1\.0: expected a reason"),
        ('[fetch]\nsandbox = "no"\n', r"fetch\.sandbox: must be one of"),
        ('[fetch.build_env]\nLD_PRELOAD = "/x.so"\n', r"fetch\.build_env\.LD_PRELOAD: only pip's settings"),
        ('[fetch.build_env]\nPIP_NO_INDEX = true\n', r"fetch\.build_env\.PIP_NO_INDEX: expected a string"),
        ("[server\n", r"not valid TOML"),
        ('[fetch]\ninterval = "soon"\n', r'fetch\.interval: not a duration: \'soon\' \(seconds, or a number'),
        ('[fetch]\ninterval = "5 fortnights"\n', r"fetch\.interval: not a duration"),
        ("[fetch]\ninterval = 0\n", r"fetch\.interval: must be 1 second to 30 days, got 0"),
        ('[fetch]\ninterval = "-1 hour"\n', r"fetch\.interval: not a duration"),
        ("[fetch]\ninterval = true\n", r"fetch\.interval: expected a duration, got True"),
        ('[fetch]\ninterval = "90 days"\n', r"fetch\.interval: must be 1 second to 30 days"),
    ],
)
def test_config_rejects_bad_input(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        config.load(str(path))
    assert str(path) in str(caught.value)
    assert re.search(message, str(caught.value)), caught.value


@pytest.mark.parametrize(("value", "seconds"), [
    (None, 3600.0), ('"15 minutes"', 900.0), ('"1 hour"', 3600.0), ('"2h"', 7200.0), ('"90s"', 90.0),
    ('"1.5 hours"', 5400.0), ("600", 600.0), ("2.5", 2.5), ('"300"', 300.0), ('"1 day"', 86400.0),
])
def test_config_fetch_interval_is_a_duration(tmp_path: Path, value: str | None, seconds: float) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[fetch]\n" + (f"interval = {value}\n" if value else ""))
    assert config.load(str(path)).fetch.interval == seconds
def test_config_build_env_and_sandbox(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[fetch]\nsandbox = "off"\n[fetch.build_env]\nPIP_NO_INDEX = "1"\n')
    loaded = config.load(str(path))
    assert (loaded.fetch.sandbox, dict(loaded.fetch.build_env)) == ("off", {"PIP_NO_INDEX": "1"})
    path.write_text("")
    default = config.load(str(path)).fetch
    assert (default.sandbox, dict(default.build_env)) == ("bwrap", {})


def test_config_reports_every_problem_at_once(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[server]\nthreads = 0\nlisten = "x"\n[upstream]\ntimeout = -1\n')
    with pytest.raises(ConfigError) as caught:
        config.load(str(path))
    assert len(caught.value.problems) == 3


def test_config_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(str(tmp_path / "absent.toml"))


def test_config_env_variable_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[server]\nlisten = "127.0.0.1:4000"\n')
    monkeypatch.setenv("PYPI_INSIDERS_CONFIG", str(path))
    assert config.load(None).server.port == 4000
    monkeypatch.delenv("PYPI_INSIDERS_CONFIG")


def test_config_overrides_win_and_are_validated(loaded_config: config.Config) -> None:
    changed = config.with_overrides(loaded_config, listen="[::1]:8080", fallback="proxy",
                                    upstream="http://127.0.0.1:5/x")
    assert (changed.server.host, changed.server.port) == ("::1", 8080)
    assert changed.upstream.url == "http://127.0.0.1:5/x/"
    assert changed.upstream.fallback == "proxy"
    with pytest.raises(ConfigError, match="--listen"):
        config.with_overrides(loaded_config, listen="no")


def test_config_repos_dropins_are_merged(make_config: ConfigMaker, tmp_path: Path) -> None:
    (tmp_path / "repos.d").mkdir()
    (tmp_path / "repos.d" / "one.toml").write_text('[repos.one]\nurl = "file:///one"\n')
    (tmp_path / "repos.d" / "two.toml").write_text('[repos.one]\nurl = "file:///two"\n')
    with pytest.raises(ConfigError, match=r"two\.toml: repos\.one: already defined"):
        config.load(str(make_config()))
    (tmp_path / "repos.d" / "two.toml").unlink()
    loaded = config.load(str(make_config()))
    assert [r.key for r in loaded.repos] == ["one"]


def test_check_config_cli_prints_one_line_per_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[server]\nlisten = "x"\n')
    assert main(["--config", str(path), "check-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pypi-insiders: {path}: server.listen:")
    assert "Traceback" not in err


def test_pipconf_environment_wins(tmp_path: Path) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = http://127.0.0.1:7/a\n[install]\nindex-url = http://127.0.0.1:7/b\n")
    env = {"HOME": str(tmp_path), "PIP_CONFIG_FILE": str(conf), "XDG_CONFIG_DIRS": str(tmp_path / "none")}
    found = pipconf.configured_index_url(env)
    assert (found.url, found.source) == ("http://127.0.0.1:7/b/", str(conf))
    env["PIP_INDEX_URL"] = "http://127.0.0.1:7/c"
    assert pipconf.configured_index_url(env).url == "http://127.0.0.1:7/c/"


def test_pipconf_falls_back_to_pips_own_default(tmp_path: Path) -> None:
    found = pipconf.configured_index_url({"HOME": str(tmp_path), "XDG_CONFIG_DIRS": str(tmp_path)})
    if found.source == "pip's default":
        assert found.url
        assert found.url.startswith("https://")
        assert found.url.endswith("/simple/")
    else:  # a site-wide pip.conf on this host names an index: that must win over pip's default
        assert found.source.endswith("pip.conf")


def test_pipconf_default_without_pip_comes_from_ensurepips_wheel() -> None:
    """The .deb does not depend on pip: with pip not importable, the wheel python3-venv brings
    gives the same default, and pip itself is still not imported."""
    import pip._internal.models.index  # noqa: PLC0415 - the expected value, from pip itself

    script = ("import sys; sys.modules['pip'] = None\n"
              "from pypi_insiders import pipconf\n"
              "print(pipconf.pip_default_url())\n"
              "print(sorted(m for m in sys.modules if m.startswith('pip')))")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         check=False, cwd=Path(__file__).parent.parent)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [pip._internal.models.index.PyPI.simple_url, "['pip']"]


def test_pipconf_a_broken_pip_wheel_is_passed_over(tmp_path: Path) -> None:
    (tmp_path / "pip-99.0-py3-none-any.whl").write_bytes(b"not a zip")
    assert pipconf._index_module_in_wheel(tmp_path) is None
    (real,) = sorted(pipconf.ENSUREPIP_WHEELS.glob("pip-*.whl"))[-1:]
    shutil.copy(real, tmp_path / real.name)
    module = pipconf._index_module_in_wheel(tmp_path)
    assert module is not None
    assert module.PyPI.simple_url.endswith("/simple")
    assert pipconf._index_module_in_wheel(tmp_path / "missing") is None


def test_config_shipped_file_is_valid_and_matches_defaults() -> None:
    shipped = Path(__file__).parent.parent / "etc" / "pypi-insiders" / "config.toml"
    loaded = config.load(str(shipped))
    assert (loaded.server.host, loaded.server.port) == ("127.0.0.1", 31411)
    assert loaded.upload.users_file == shipped.parent / "users"
    # Every commented-out default in the shipped file, uncommented, must still be valid.
    uncommented = re.sub(r"^#(\[?[a-z\"])", r"\1", shipped.read_text(), flags=re.MULTILINE)
    assert config.from_mapping(tomllib.loads(uncommented), shipped).repos


@pytest.mark.parametrize(("cores", "expected"), [({0}, 1), (None, None)])
def test_config_processes_default_to_one_per_usable_core(make_config: ConfigMaker, cores: set[int] | None,
                                                         expected: int | None) -> None:
    """In a child pinned to one core (as CPUAffinity= would), and here on all of ours, capped at 4."""
    path = make_config()
    pin = f"os.sched_setaffinity(0, {cores!r}); " if cores else ""
    code = (f"import os; {pin}from pypi_insiders import config; "
            f"print(config.load({str(path)!r}).server.processes)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          check=True, env=g.cli_env())
    want = expected if expected is not None else min(len(os.sched_getaffinity(0)), 4)
    assert int(done.stdout) == want
    assert config.load(str(make_config(server={"processes": 3}))).server.processes == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('fallback = "mirror"\nmax_size = "ten"', r"upstream\.max_size: expected a size in bytes"),
        ('min_free = "2 PB"', r"upstream\.min_free: expected a size"),
        ('max_size = -1', r"upstream\.max_size: must be 0 or more"),
        ('cooldown = "3 months"', r"upstream\.cooldown: expected a duration .*months and years"),
        ('cooldown = "P1M"', r"upstream\.cooldown: expected a duration .*ISO 8601"),
        ('cooldown = "soon"', r"upstream\.cooldown: expected a duration"),
        ('cooldown = -5', r"upstream\.cooldown: must be 0 or more"),
        ('cooldown_unknown = "maybe"', r"upstream\.cooldown_unknown: must be one of 'hide', 'show'"),
        ('cooldown_exempt = ["ok", "not a name"]', r"upstream\.cooldown_exempt\[1\]: not a project name"),
        ('allow = [3]', r"upstream\.allow\[0\]: not a project name"),
        ('deny = ["evil>>1"]', r"upstream\.deny\[0\]: not a name or a PEP 508 specifier"),
        ('deny = ["evil[x]"]', r'upstream\.deny\[0\]: expected "name" or "name<specifiers>"'),
        ('anonymous = "all"', r"upstream\.anonymous: must be one of 'mirror', 'redirect', 'none'"),
        ('offline = "yes"', r"upstream\.offline: expected true or false"),
        ('max_file_size = "huge"', r"upstream\.max_file_size: expected a size in bytes"),
        ('max_file_size = -1', r"upstream\.max_file_size: must be 0 or more"),
        ('file_timeout = "a while"', r"upstream\.file_timeout: expected a duration"),
        ('file_timeout = -1', r"upstream\.file_timeout: must be 0 or more"),
        ('file_timeout = "2 months"', r"upstream\.file_timeout: expected a duration .*months and years"),
        ('keep_removed = "no"', r"upstream\.keep_removed: expected true or false"),
        ('keep_remove = true', r"upstream\.keep_remove: unknown key \(did you mean 'keep_removed'\?\)"),
        ('cooldwn = 3', r"upstream\.cooldwn: unknown key \(did you mean 'cooldown'\?\)"),
    ],
)
def test_config_mirror_keys_reject_bad_values(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[upstream]\n{text}\n")
    with pytest.raises(ConfigError) as caught:
        config.load(str(path))
    assert len(caught.value.problems) == 1, caught.value.problems
    assert "\n" not in caught.value.problems[0]
    assert re.search(message, str(caught.value)), caught.value


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(0, 0.0), ("0", 0.0), (3600, 3600.0), ("7 days", 604800.0), ("72 hours", 259200.0),
     ("P7D", 604800.0), ("PT72H", 259200.0), ("1 week", 604800.0), ("P1W", 604800.0),
     ("90 minutes", 5400.0), ("1.5 h", 5400.0)],
)
def test_config_mirror_cooldown_forms(tmp_path: Path, value: object, seconds: float) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[upstream]\ncooldown = {toml_value(value)}\n")
    assert config.load(str(path)).upstream.cooldown == seconds


@pytest.mark.parametrize(
    ("value", "size"),
    [(0, 0), (1000, 1000), ("10 GiB", 10 * 1024**3), ("512MiB", 512 * 1024**2), ("2 GB", 2 * 10**9),
     ("1.5 KiB", 1536), ("7 bytes", 7)],
)
def test_config_mirror_size_forms(tmp_path: Path, value: object, size: int) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[upstream]\nmax_size = {toml_value(value)}\n")
    assert config.load(str(path)).upstream.max_size == size


def test_config_mirror_keys_parsed(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[upstream]\nfallback = "mirror"\noffline = true\ncooldown_exempt = ["Foo_Bar"]\n'
                    'allow = ["a", "B.c"]\ndeny = ["evil", "bad>=1.2,<1.4"]\ncooldown_unknown = "show"\n')
    up = config.load(str(path)).upstream
    assert up.fallback == "mirror"
    assert up.offline
    assert up.cooldown_exempt == {"foo-bar"}
    assert up.allow == {"a", "b-c"}
    assert [str(r) for r in up.deny] == ["evil", "bad<1.4,>=1.2"]
    assert up.cooldown_unknown == "show"


def test_config_mirror_operational_keys(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[upstream]\n")
    up = config.load(str(path)).upstream
    assert (up.max_file_size, up.file_timeout, up.keep_removed) == (4 * 1024**3, 900.0, False)
    path.write_text('[upstream]\nmax_file_size = "512 MiB"\nfile_timeout = "30 minutes"\n'
                    'keep_removed = true\n')
    up = config.load(str(path)).upstream
    assert (up.max_file_size, up.file_timeout, up.keep_removed) == (512 * 1024**2, 1800.0, True)
    path.write_text('[upstream]\nmax_file_size = "0"\nfile_timeout = "PT2H"\n')
    up = config.load(str(path)).upstream
    assert (up.max_file_size, up.file_timeout) == (0, 7200.0)


@pytest.mark.parametrize(
    ("listen", "anonymous", "key", "expected"),
    [("127.0.0.1:0", "", "", "mirror"), ("0.0.0.0:0", "", "", "redirect"),
     ("0.0.0.0:0", "read", "", "mirror"), ("127.0.0.1:0", "", "none", "none")],
)
def test_config_mirror_anonymous_default_follows_access(
        tmp_path: Path, listen: str, anonymous: str, key: str, expected: str) -> None:
    path = tmp_path / "config.toml"
    text = f'[server]\nlisten = "{listen}"\n[upstream]\n' + (f'anonymous = "{key}"\n' if key else "")
    path.write_text(text + (f'[access]\nanonymous = "{anonymous}"\n' if anonymous else ""))
    assert config.load(str(path)).mirror_anonymous()[0] == expected


def test_config_serve_fallback_mirror_override(loaded_config: config.Config) -> None:
    assert config.with_overrides(loaded_config, fallback="mirror").upstream.fallback == "mirror"
    with pytest.raises(ConfigError, match="--fallback: must be one of 'redirect', 'proxy', 'mirror', 'off'"):
        config.with_overrides(loaded_config, fallback="cache")


def test_check_config_shows_the_mirrors_anonymous_policy_and_why(
        make_config: ConfigMaker, capsys: pytest.CaptureFixture[str]) -> None:
    path = make_config(upstream={"fallback": "mirror"}, access={"anonymous": "none"})
    assert main(["--config", str(path), "check-config", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["mirror_anonymous"] == ("redirect (default: anonymous callers may not read "
                                         "([access] anonymous))")
