"""`pypi-insiders yank`, `unyank` and `remove`: changing what the index serves without editing
the configuration, and without a restart.

A yank goes to `<state>/yanked.json` (`index.yanks`), which the running index re-reads; a
removed file leaves the store, the watcher drops it from the pages, and its filename stays in
the record of published filenames, so no upload can reuse it. Run as root against the service's
data, each command first becomes the service user (`privileges`), so what it writes stays
writable by the service.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
from pathlib import Path

from packaging.utils import canonicalize_name

from pypi_insiders import config, privileges
from pypi_insiders.errors import InvalidDistributionError, StoreError, UsageError
from pypi_insiders.index.yanks import YankState, version_key
from pypi_insiders.store import Store, parse_filename

log = logging.getLogger(__name__)


def _who() -> str:
    """Who yanked, for the record: the sudo caller rather than root when there is one."""
    try:
        return f"{os.environ.get('SUDO_USER') or getpass.getuser()} (command line)"
    except (KeyError, OSError):
        return "command line"


def _configured(loaded: config.Config, project: str, version: str) -> bool:
    versions = loaded.index.yanked.get(canonicalize_name(project), {})
    return any(_same_version(v, version) for v in versions)


def _same_version(a: str, b: str) -> bool:
    try:
        return version_key(a) == version_key(b)
    except UsageError:
        return a == b


def cmd_yank(args: argparse.Namespace) -> int:
    loaded = config.load(args.config)
    version_key(args.version)  # a bad version is a usage error before anything else
    privileges.become_data_owner(loaded.paths.state)
    name = canonicalize_name(args.project)
    state = YankState(loaded.paths.state)
    if args.undo:
        return _unyank(loaded, state, args.project, args.version)
    from pypi_insiders.web.index_visibility import IndexView  # noqa: PLC0415 - for this command only

    if not IndexView(loaded.paths.index).release(name, version_key(args.version)):
        msg = f"{name} has no release {version_key(args.version)} in the index ({loaded.paths.index})"
        raise UsageError(msg)
    changed = state.yank(args.project, args.version, args.reason, _who())
    reason = f" ({args.reason})" if args.reason else ""
    print(f"{name} {version_key(args.version)}: {'yanked' if changed else 'already yanked'}{reason}")
    return 0


def _unyank(loaded: config.Config, state: YankState, project: str, version: str) -> int:
    name, key = canonicalize_name(project), version_key(version)
    if _configured(loaded, project, version):
        msg = f"{name} {key} is yanked in {loaded.path} ([yank.{name}]): un-yank it there"
        raise UsageError(msg)
    if not state.unyank(project, version, _who()):
        msg = f"{name} {key} is not yanked"
        raise UsageError(msg)
    print(f"{name} {key}: un-yanked")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    """Delete every copy of a distribution file from the store; its name is never used again."""
    loaded = config.load(args.config)
    filename = Path(args.file).name
    try:
        parsed = parse_filename(filename)
    except InvalidDistributionError as error:
        raise UsageError(str(error)) from None
    privileges.become_data_owner(loaded.paths.state)
    store = Store.for_config(loaded)
    try:
        copies = store.remove(filename)  # the name is recorded before the first copy goes
    except StoreError as error:
        raise UsageError(str(error)) from None
    if not copies:
        msg = f"{filename}: not in the store ({store.root})"
        raise UsageError(msg)
    for path in copies:
        log.info("removed %s from the store", path, extra={"PROJECT": parsed.project, "FILE": filename})
    where = ", ".join(str(p) for p in copies)
    print(f"{filename}: removed ({where}); the filename can never be uploaded again")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    yank = sub.add_parser("yank", help="yank a release (PEP 592), or un-yank it with --undo")
    yank.add_argument("project", metavar="PROJECT")
    yank.add_argument("version", metavar="VERSION")
    yank.add_argument("--reason", default="", help="shown to installers (one line)")
    yank.add_argument("--undo", action="store_true", help="un-yank instead")
    yank.set_defaults(handler=cmd_yank)
    remove = sub.add_parser("remove", help="delete a distribution file from the store for good")
    remove.add_argument("file", metavar="FILE", help="its filename (or a path ending in it)")
    remove.set_defaults(handler=cmd_remove)
