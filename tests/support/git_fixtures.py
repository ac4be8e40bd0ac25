"""Real git repositories made with dulwich, small projects to build, and a smart-HTTP git server.

The "intree" backend is a PEP 517 backend that lives in the project itself (backend-path), so
builds of it need no package index: it reads the version from the pretend-version variable the
builder sets (proving the variable reaches backends), can be told to fail or to sleep, and
writes a real sdist and wheel. Real third-party backends are in `BACKEND_PYPROJECTS`.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from dulwich import porcelain as _porcelain
from dulwich import server as _server
from dulwich import web as _web
from dulwich.repo import Repo

import pypi_insiders
from tests.support.server_fixtures import ThreadedServer

# dulwich 0.21 is only partly annotated: its untyped helpers are used through Any, on purpose.
porcelain = cast(Any, _porcelain)
dulwich_server = cast(Any, _server)
dulwich_web = cast(Any, _web)

IDENTITY = b"Test Author <author@example.invalid>"

INTREE_BACKEND = r'''
"""A tiny PEP 517 backend for tests: version from the builder's pretend-version variable."""
import base64, hashlib, io, os, pathlib, tarfile, time, zipfile

def _meta():
    name = pathlib.Path("NAME").read_text().strip()
    static = pathlib.Path("STATIC_VERSION")
    version = static.read_text().strip() if static.exists() else os.environ["SETUPTOOLS_SCM_PRETEND_VERSION"]
    return name, version

def _control():
    slow = pathlib.Path("SLOW")  # names a gate file: while it exists, the build hangs
    gate = pathlib.Path(slow.read_text().strip()) if slow.exists() else None
    if gate is not None and gate.exists():
        gate.with_suffix(".pid").write_text(str(os.getpid()))
        deadline = time.monotonic() + 120
        while gate.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    if pathlib.Path("FAIL").exists():
        raise RuntimeError("this build fails on purpose")
    hidden = pathlib.Path("HIDDEN")  # modules the build environment must not offer the backend
    if hidden.exists():
        import importlib.util
        seen = [n for n in hidden.read_text().split() if importlib.util.find_spec(n) is not None]
        if seen:
            raise RuntimeError(f"the build environment leaks {seen}")

def _metadata(name, version):
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n".encode()

def build_sdist(sdist_directory, config_settings=None):
    _control()
    name, version = _meta()
    base = f"{name.replace('-', '_')}-{version}"
    with tarfile.open(os.path.join(sdist_directory, base + ".tar.gz"), "w:gz") as archive:
        for member, data in ((f"{base}/PKG-INFO", _metadata(name, version)),
                             (f"{base}/NAME", name.encode())):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            info.mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
            archive.addfile(info, io.BytesIO(data))
    return base + ".tar.gz"

def _hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _control()
    name, version = _meta()
    module = name.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    files = {f"{module}/__init__.py": f"VERSION = {version!r}\n".encode(),
             f"{info}/METADATA": _metadata(name, version),
             f"{info}/WHEEL": (b"Wheel-Version: 1.0\nGenerator: intree\nRoot-Is-Purelib: true\n"
                               b"Tag: py3-none-any\n\n")}
    record = "".join(f"{p},{_hash(d)},{len(d)}\n" for p, d in files.items()) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    filename = f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return filename
'''

INTREE_PYPROJECT = """[build-system]
requires = []
build-backend = "intree_backend"
backend-path = ["."]
"""

_DYNAMIC_VERSION_PYPROJECT = """[build-system]
requires = {requires}
build-backend = "{backend}"

[project]
name = "{{name}}"
dynamic = ["version"]

"""


def dynamic_version_pyproject(requires: list[str], backend: str, tables: str) -> str:
    """A pyproject.toml whose backend finds the version itself (from git), `{name}` and `{module}`
    left to format: backends differ only in what they require and in their own `tables`."""
    return _DYNAMIC_VERSION_PYPROJECT.format(requires=json.dumps(requires), backend=backend) + tables


BACKEND_PYPROJECTS = {
    "setuptools": dynamic_version_pyproject(
        ["setuptools>=64", "setuptools-scm>=8"], "setuptools.build_meta", """\
[tool.setuptools]
packages = ["{module}"]

[tool.setuptools_scm]
"""),
    "hatchling": dynamic_version_pyproject(["hatchling", "hatch-vcs"], "hatchling.build", """\
[tool.hatch.version]
source = "vcs"

[tool.hatch.build.targets.wheel]
packages = ["{module}"]
"""),
    "pdm-backend": dynamic_version_pyproject(["pdm-backend"], "pdm.backend", """\
[tool.pdm.version]
source = "scm"
"""),
}


def cli_env() -> dict[str, str]:
    """The environment for `python -m pypi_insiders` in a subprocess, whatever its working directory
    (the Debian build runs the tests from a copy that is importable only from its own directory)."""
    package_root = str(Path(pypi_insiders.__file__).resolve().parent.parent)
    paths = [package_root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def write_files(root: Path, files: dict[str, str]) -> None:
    for relpath, text in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def intree_files(name: str) -> dict[str, str]:
    return {"pyproject.toml": INTREE_PYPROJECT, "intree_backend.py": INTREE_BACKEND, "NAME": name + "\n"}


def backend_files(backend: str, name: str) -> dict[str, str]:
    module = name.replace("-", "_")
    return {"pyproject.toml": BACKEND_PYPROJECTS[backend].format(name=name, module=module),
            f"{module}/__init__.py": '"""A test project."""\n'}


def init_repo(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    porcelain.init(str(path))
    commit_files(path, files, "initial commit")
    return path


def commit_files(path: Path, files: dict[str, str], message: str = "change") -> str:
    write_files(path, files)
    porcelain.add(str(path), [str(path / name) for name in files])
    sha: bytes = porcelain.commit(str(path), message=message.encode(), author=IDENTITY, committer=IDENTITY)
    return sha.decode()


def remove_files(path: Path, names: Iterable[str], message: str = "remove") -> str:
    for name in names:
        (path / name).unlink()
    porcelain.remove(str(path), [str(path / n) for n in names], cached=True)
    sha: bytes = porcelain.commit(str(path), message=message.encode(), author=IDENTITY, committer=IDENTITY)
    return sha.decode()


def tag(path: Path, name: str, *, annotated: bool = True, force: bool = False) -> None:
    """`force` moves an existing tag to HEAD, as `git tag -f` does."""
    if force:
        porcelain.tag_delete(str(path), name.encode())
    porcelain.tag_create(str(path), name.encode(), author=IDENTITY, message=b"release " + name.encode(),
                         annotated=annotated)


def object_count(repo_path: Path) -> int:
    repo: Any = Repo(str(repo_path))
    try:
        return sum(1 for _ in repo.object_store)
    finally:
        repo.close()


@dataclass
class GitServer:
    """A loopback smart-HTTP git server; every request is logged as (method, path, status)."""

    url: str
    requests: list[tuple[str, str, int]] = field(default_factory=list)

    def upload_pack_posts(self) -> int:
        return sum(1 for method, path, _ in self.requests if method == "POST" and "upload-pack" in path)


def _basic_auth(app: Callable[..., Any], user: str, password: str,
                log: list[tuple[str, str, int]]) -> Callable[..., Any]:
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        if environ.get("HTTP_AUTHORIZATION") != expected:
            log.append((method, path, 401))
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="git"'),
                                                ("Content-Type", "text/plain")])
            return [b"credentials required\n"]

        def recording_start(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            log.append((method, path, int(status.split(maxsplit=1)[0])))
            return start_response(status, headers, *args)

        return app(environ, recording_start)

    return guarded


@contextmanager
def git_http_server(repos: dict[str, Path], user: str, password: str) -> Iterator[GitServer]:
    """Serve `repos` (URL path -> repository) over smart HTTP with basic auth, on 127.0.0.1:0."""
    backend = dulwich_server.DictBackend({f"/{name}": Repo(str(path)) for name, path in repos.items()})
    log: list[tuple[str, str, int]] = []
    app = _basic_auth(dulwich_web.make_wsgi_chain(backend), user, password, log)
    try:
        with ThreadedServer(app, threads=2) as server:
            yield GitServer(server.url.rstrip("/"), log)
    finally:
        for repo in backend.repos.values():
            repo.close()
