"""Real, small, installable distributions made on the fly, so tests need no network to get files."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from packaging.utils import canonicalize_name


def _metadata(name: str, version: str, requires_python: str | None, requires: Sequence[str]) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
             "Summary: a test distribution"]
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Requires-Dist: {r}" for r in requires]
    return "\n".join(lines) + "\n\n"


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def wheel_filename(name: str, version: str) -> str:
    return f"{canonicalize_name(name).replace('-', '_')}-{version}-py3-none-any.whl"


def make_wheel(directory: Path, name: str, version: str, *, requires_python: str | None = None,
               requires: Sequence[str] = (), metadata_name: str | None = None,
               metadata_version: str | None = None, filename: str | None = None) -> Path:
    """A pure-Python wheel installing module `<name>` with `VERSION`; metadata_* forge a mismatch."""
    module = canonicalize_name(name).replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": f"VERSION = {version!r}\n".encode(),
        f"{dist_info}/METADATA": _metadata(metadata_name or name, metadata_version or version,
                                           requires_python, requires).encode(),
        f"{dist_info}/WHEEL": (b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
                               b"Tag: py3-none-any\n\n"),
    }
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in files.items())
    record += f"{dist_info}/RECORD,,\n"
    files[f"{dist_info}/RECORD"] = record.encode()
    path = directory / (filename or wheel_filename(name, version))
    directory.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in files.items():
            archive.writestr(member, data)
    return path


def make_sdist(directory: Path, name: str, version: str, *, requires_python: str | None = None,
               metadata_name: str | None = None) -> Path:
    """A setuptools sdist with PKG-INFO; building it needs setuptools from an index."""
    base = f"{canonicalize_name(name).replace('-', '_')}-{version}"
    module = canonicalize_name(name).replace("-", "_")
    pyproject = (
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{name}"\nversion = "{version}"\n'
        + (f'requires-python = "{requires_python}"\n' if requires_python else "")
    )
    files = {
        f"{base}/PKG-INFO": _metadata(metadata_name or name, version, requires_python, ()).encode(),
        f"{base}/pyproject.toml": pyproject.encode(),
        f"{base}/{module}/__init__.py": f"VERSION = {version!r}\n".encode(),
    }
    path = directory / f"{base}.tar.gz"
    directory.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        for member, data in files.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            info.mtime = 1_700_000_000
            archive.addfile(info, io.BytesIO(data))
    return path
