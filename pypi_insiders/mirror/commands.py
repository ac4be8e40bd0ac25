"""`pypi-insiders mirror prefetch|verify|sweep|purge`: the mirror's maintenance, by hand.

Deleting is done here or by the service, never through HTTP. Prefetch keeps what it fetched
from eviction (a mark in `kept/`) and goes through the same checks as a request: a local or
pinned name is refused before anything is asked upstream, as are denied names and files
inside the cooldown.
"""

from __future__ import annotations

import argparse
import functools
import logging
from pathlib import Path

from packaging.tags import Tag, sys_tags
from packaging.utils import NormalizedName, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from pypi_insiders import config, privileges
from pypi_insiders.errors import InsidersError, InvalidDistributionError, UsageError
from pypi_insiders.files import atomic_write
from pypi_insiders.http_client import HttpClient
from pypi_insiders.index.layout import IndexLayout
from pypi_insiders.index.pins import Pins, is_local
from pypi_insiders.mirror.mirror import Mirror
from pypi_insiders.mirror.page import MirroredFile
from pypi_insiders.mirror.pages import PageNotFound, UpstreamFailed
from pypi_insiders.mirror.requirements import Pin, read_pins
from pypi_insiders.mirror.transfer import FetchFailed, Transfer
from pypi_insiders.state_layout import StateLayout
from pypi_insiders.store import parse_filename

log = logging.getLogger(__name__)


def run(args: argparse.Namespace) -> int:
    loaded = config.load(args.config)
    privileges.become_data_owner(loaded.paths.state)
    with HttpClient() as client:
        mirror = Mirror(loaded.paths.cache, loaded.upstream, client)
        if args.mirror_command == "prefetch":
            return prefetch(loaded, mirror, [Path(f) for f in args.requirement], host_only=args.host_only)
        if args.mirror_command == "verify":
            bad = mirror.sweeper.verify()
            for item in bad:
                print(f"deleted {item.path.name}: its bytes do not match sha256 {item.sha256}")
            print(f"verified: {mirror.sweeper.usage()[1]} files good, {len(bad)} deleted")
            return 1 if bad else 0
        if args.mirror_command == "sweep":
            swept = mirror.sweeper.sweep()  # the very sweep the service runs every five minutes
            used, count = mirror.sweeper.usage()
            print(f"swept: {swept.summary()}; {count} files, {used} bytes kept")
            return 0
        return purge(mirror, canonicalize_name(args.name))


def purge(mirror: Mirror, name: NormalizedName) -> int:
    mirror.pages.forget(name)
    removed = 0
    for item in list(mirror.sweeper.stored()):
        try:
            project = parse_filename(item.path.name).project
        except InvalidDistributionError:
            continue
        if project == name and not mirror.layout.keep_mark(item.sha256).exists() \
                and mirror.sweeper.remove(item.sha256):
            removed += 1
    print(f"purged {name}: its page and {removed} file(s)")
    return 0


def prefetch(loaded: config.Config, mirror: Mirror, files: list[Path], *, host_only: bool = False) -> int:
    if loaded.upstream.offline or loaded.upstream.url is None:
        msg = "mirror prefetch needs upstream: upstream.offline is true or no upstream.url is known"
        raise UsageError(msg)
    pins = [pin for path in files for pin in read_pins(path)]
    pinned = Pins(StateLayout(loaded.paths.state).pinned_projects)
    roots = [str(loaded.paths.store), str(IndexLayout(loaded.paths.index).simple)]
    failures = 0
    for pin in pins:
        if is_local(pin.name, pinned, roots):
            print(f"refused {pin.name}: a local name never goes upstream ({pin.where})")
            failures += 1
            continue
        failures += _prefetch_one(mirror, pin, host_only=host_only)
    return 1 if failures else 0


def _prefetch_one(mirror: Mirror, pin: Pin, *, host_only: bool) -> int:
    refused = mirror.policy.refused(pin.name)
    if refused is not None:
        print(f"refused {pin.name}: {refused} ({pin.where})")
        return 1
    try:
        page = mirror.pages.load(pin.name).page
    except (PageNotFound, UpstreamFailed) as error:
        print(f"failed {pin.name}=={pin.version}: {error} ({pin.where})")
        return 1
    chosen = [f for f in page.files if _same_version(f.version, pin.version)
              and (f.sha256 in pin.hashes if pin.hashes else not host_only or _for_this_host(f.filename))]
    if not chosen:
        print(f"failed {pin.name}=={pin.version}: no file upstream matches ({pin.where})")
        return 1
    return sum(_keep(mirror, pin, item) for item in chosen)


def _keep(mirror: Mirror, pin: Pin, item: MirroredFile) -> int:
    hidden = mirror.policy.hidden(pin.name, item) or mirror.downloads.too_large(item.size)
    if hidden is not None:
        print(f"refused {item.filename}: {hidden}")
        return 1
    mark = mirror.layout.keep_mark(item.sha256)
    atomic_write(mark, f"{pin.name} {item.filename}\n".encode())  # first: eviction passes it over
    try:
        found = mirror.downloads.on_disk(item) or mirror.downloads.fetch(pin.name, item)
        if isinstance(found, Transfer):
            for _chunk in found.body:
                pass
            close = getattr(found.body, "close", None)
            if close is not None:
                close()
        if item.core_metadata:
            mirror.downloads.metadata(pin.name, item)
    except (FetchFailed, InsidersError, OSError) as error:
        mark.unlink(missing_ok=True)
        print(f"failed {item.filename}: {error}")
        return 1
    if mirror.downloads.on_disk(item) is None:
        mark.unlink(missing_ok=True)
        print(f"failed {item.filename}: not verified (see the log)")
        return 1
    print(f"kept {item.filename}")
    return 0


def _for_this_host(filename: str) -> bool:
    """An sdist, or a wheel this machine's Python can install (hash-pinned files are chosen by
    their lock instead)."""
    if not filename.endswith(".whl"):
        return True
    return not parse_wheel_filename(filename)[3].isdisjoint(_host_tags())


@functools.cache
def _host_tags() -> frozenset[Tag]:
    return frozenset(sys_tags())


def _same_version(found: str, wanted: str) -> bool:
    try:
        return Version(found) == Version(wanted)
    except InvalidVersion:
        return found == wanted
