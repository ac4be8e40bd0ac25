"""The team index every client test talks to: a real `pypi-insiders serve` with anonymous = "none",
`public-pkg` an Insiders build of a public project and `private-pkg` local only, a second loopback
server playing upstream, a sponsor's read token and a reader's token for public-pkg alone; and
how a client runs there, with a HOME and config of its own, never the host's.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import config_maker
from tests.support.distfiles import make_wheel
from tests.support.server_fixtures import FakeUpstream, Running, ThreadedServer, serve_process, service_env

LOCAL = "public_pkg-9.9.1.dist-info"  # the Insiders build
PUBLIC = "public_pkg-9.9.dist-info"  # upstream's release
PRIVATE = "private_pkg-1.0.dist-info"


@dataclass
class Team:
    served: Running
    config_file: Path
    token: str  # the sponsor's read token
    readonly: str  # a read-only token of another user
    upstream: FakeUpstream

    @property
    def index(self) -> str:
        return self.served.url + "simple/"

    def with_credentials(self, user: str, secret: str) -> str:
        return self.index.replace("http://", f"http://{user}:{secret}@", 1)


def cli(config_file: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "pypi_insiders", "--config", str(config_file), *args],
                          capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
                          env=service_env())
    assert done.returncode == 0, done.stderr
    return done.stdout


@contextmanager
def team_server(root: Path) -> Iterator[Team]:
    """One server for a module: client tests only read, and each gets its own HOME."""
    public = make_wheel(root / "upstream", "public-pkg", "9.9")
    fake = FakeUpstream(projects={"public-pkg": {public.name: public.read_bytes()}})
    make_wheel(root / "data" / "store" / "public-pkg", "public-pkg", "9.9.1")
    make_wheel(root / "data" / "store" / "private-pkg", "private-pkg", "1.0")
    with ThreadedServer(fake.app) as upstream:
        maker = config_maker(root)
        config_file = maker(upstream={"url": upstream.url + "simple/", "fallback": "redirect"},
                            access={"anonymous": "none", "public_projects": ["public-pkg"]},
                            upload={"enabled": True})
        token = cli(config_file, "users", "add", "sponsor-ci", "--token").splitlines()[0]
        readonly = cli(config_file, "users", "add", "reader", "--token", "--read", "public-pkg")
        readonly = readonly.splitlines()[0]
        with serve_process(config_file) as served:
            yield Team(served, config_file, token, readonly, fake)
            assert token not in served.output()


def client_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A client's environment: HOME and XDG dirs of its own, no user config, no cache shared."""
    home.mkdir(parents=True, exist_ok=True)
    env = service_env({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
                       "XDG_CACHE_HOME": str(home / ".cache"), "XDG_DATA_HOME": str(home / ".local/share"),
                       "UV_CACHE_DIR": str(home / "uv-cache"), "UV_PYTHON_DOWNLOADS": "never",
                       "PIP_NO_INPUT": "1", "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"})
    env.update(extra or {})
    return env


def run(argv: list[str], cwd: Path, env: dict[str, str], *,
        ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                            check=False, stdin=subprocess.DEVNULL)
    if ok:
        assert result.returncode == 0, f"{argv}\n{result.stdout}\n{result.stderr}"
    return result


def installed(target: Path) -> set[str]:
    return {p.name for p in target.rglob("*.dist-info")}
