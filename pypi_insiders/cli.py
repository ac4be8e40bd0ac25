"""The `pypi-insiders` command: argument parsing, and the only place errors become exit statuses.

Each command's work lives in the module that owns it; this file only wires arguments to it.
Those modules are imported when their command runs, so `--help` and `check-config` stay fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pypi_insiders import __version__, config, directories, maintain, privileges, sd
from pypi_insiders.errors import ConfigError, InsidersError, UsageError
from pypi_insiders.http_client import display_url
from pypi_insiders.state_layout import StateLayout
from pypi_insiders.wording import utc

log = logging.getLogger(__name__)

Handler = Callable[[argparse.Namespace], int]
_MIN_SECRET, _MAX_SECRET = 8, 1024


def _load(args: argparse.Namespace, *, reading: bool = False) -> config.Config:
    """`reading`: the command only reads, so a member of the service's group gets the system's."""
    loaded = config.load(args.config, reading=reading)
    if getattr(args, "command", None) == "serve":
        loaded = config.with_overrides(loaded, listen=args.listen, store=args.store,
                                       upstream=args.upstream, fallback=args.fallback)
    return loaded


# --------------------------------------------------------------------------- handlers


def cmd_serve(args: argparse.Namespace) -> int:
    from pypi_insiders import service  # noqa: PLC0415
    from pypi_insiders.service import processes  # noqa: PLC0415

    processes.tune_heap()
    return service.serve(_load(args), config_arg=args.config)


def cmd_generate(args: argparse.Namespace) -> int:
    from pypi_insiders.index import generate  # noqa: PLC0415

    loaded = _load(args)
    privileges.become_data_owner(loaded.paths.state)
    directories.prepare(loaded, create=True)
    generate.Generator.from_config(loaded).generate_all()
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from pypi_insiders import webhook_secrets  # noqa: PLC0415

    loaded = _load(args, reading=True)
    directories.prepare(loaded, create=False, write=not config.reads_system_as_group(loaded.path))
    if args.reload:
        _refuse_restart_only_changes(loaded)
    hook_problems = webhook_secrets.check(loaded)
    errors = [p for p in hook_problems if not p.startswith("warning: ")]
    if errors:
        raise ConfigError(errors)
    warnings = [*loaded.upstream.skipped, *_proxy_warning(loaded),
                *(p.removeprefix("warning: ") for p in hook_problems if p.startswith("warning: "))]
    if args.json:
        print(json.dumps({**_summary(loaded), "sources": dict(loaded.sources), "warnings": warnings},
                         indent=2))
    else:
        print(f"{loaded.path or 'embedded default (no config file)'}: OK")
        for key, value in _summary(loaded).items():
            source = loaded.sources.get(_SOURCE_OF.get(key, key))
            print(f"  {key}: {value}" + (f"  [{source}]" if source and source != value else ""))
    for line in warnings:
        print(f"pypi-insiders: warning: {line}", file=sys.stderr)
    return 0


_SOURCE_OF = {"state": "data", "webhook secrets": "webhook-secrets"}


def _refuse_restart_only_changes(loaded: config.Config) -> None:
    """What the unit's ExecReload runs first: a reload that would keep the old [server] or paths
    fails, so `systemctl reload` says so instead of exiting 0."""
    from pypi_insiders.service import live_config  # noqa: PLC0415

    found = live_config.changes_needing_restart(loaded)
    if found and found[1]:
        pid, changes = found
        raise ConfigError([f"{change} needs a restart of the running index (PID {pid}), "
                           "not a reload: nothing reloaded (systemctl restart pypi-insiders-index)"
                           for change in changes])


def _proxy_warning(loaded: config.Config) -> list[str]:
    """Proxy headers the running service saw without trusted_proxy (it noted them in its state)."""
    if loaded.server.trusted_proxy:
        return []
    from pypi_insiders.web.forwarded import untrusted_proxy_note  # noqa: PLC0415

    note = untrusted_proxy_note(loaded.paths.state)
    return [f"server.trusted_proxy: {note}"] if note else []


def _summary(loaded: config.Config) -> dict[str, object]:
    return {
        "config": loaded.sources.get("config", "embedded default"),
        "listen": f"{loaded.server.host}:{loaded.server.port}",
        "store": str(loaded.paths.store),
        "index": str(loaded.paths.index),
        "state": str(loaded.paths.state),
        "cache": str(loaded.paths.cache),
        "upstream": f"{display_url(loaded.upstream.url or 'none')} ({loaded.upstream.url_source})",
        "fallback": loaded.upstream.fallback,
        **({"mirror_anonymous": "{} ({})".format(*loaded.mirror_anonymous())}
           if loaded.upstream.fallback == "mirror" else {}),
        "repos.d": str(loaded.fetch.repos_dir),
        "credentials": str(loaded.fetch.credentials_dir),
        "users": str(loaded.upload.users_file),
        "upload": "enabled" if loaded.upload.enabled else "disabled",
        "anonymous": f"{loaded.access.anonymous} ({loaded.access.reason})",
        "public_projects": ", ".join(sorted(loaded.access.public_projects)) or "none",
        "repositories": len(loaded.repos),
        "webhooks": (f"enabled ({sum(r.webhook_secret is not None for r in loaded.repos)} with a secret)"
                     if loaded.webhooks.enabled else "disabled"),
        "webhook secrets": str(loaded.webhooks.secrets_dir),
    }


def cmd_users(args: argparse.Namespace) -> int:
    from pypi_insiders.web import users  # noqa: PLC0415

    loaded = _load(args)
    path = loaded.upload.users_file
    if args.users_command == "add":
        return _users_add(args, path)
    if args.users_command == "remove":
        users.remove_user(path, args.name)
        print(f"removed user {args.name} from {path}; a running server refuses it within a second")
        return 0
    last_use = users.read_last_use(StateLayout(loaded.paths.state).users_last_use)
    for user in users.read_users(path).values():
        expires = utc(user.expires) if user.expires is not None else "never"
        used = utc(last_use[user.name]) if user.name in last_use else "never"
        print(f"{user.name}\t{'token' if user.token else 'password'}\tread={user.read}\t"
              f"upload={user.upload or '-'}\texpires={expires}\tlast-use={used}")
    return 0


def _users_add(args: argparse.Namespace, path: Path) -> int:
    """With --token, the token is the first line of standard output, printed once."""
    import time  # noqa: PLC0415

    from pypi_insiders.web import passwords, users  # noqa: PLC0415

    users.check_name(args.name)
    read = users.scope_argument("--read", args.read)
    upload = users.scope_argument("--upload", args.upload)
    expires = users.expiry_argument(args.expires, time.time())
    secret = passwords.make_token(args.name) if args.token else _read_secret()
    user = users.User(args.name, passwords.hash_secret(secret), read, upload, expires, token=args.token)
    existed = users.add_user(path, user)
    if args.token:
        print(secret)
        print(f"API token for {args.name}: shown once; use it as the password with user name "
              f"{args.name!r} or {users.TOKEN_USER!r}", file=sys.stderr)
    print(f"{'changed' if existed else 'added'} user {args.name} in {path}: read={read} "
          f"upload={upload or '-'} expires={utc(expires) if expires else 'never'}",
          file=sys.stderr if args.token else sys.stdout)
    return 0


def _read_secret() -> str:
    import getpass  # noqa: PLC0415

    if sys.stdin.isatty():
        first = getpass.getpass("secret: ")
        if getpass.getpass("secret again: ") != first:
            msg = "the two secrets differ; nothing changed"
            raise UsageError(msg)
        secret = first
    else:
        secret = sys.stdin.readline().rstrip("\r\n")
    if not _MIN_SECRET <= len(secret) <= _MAX_SECRET:
        msg = f"the secret must be {_MIN_SECRET} to {_MAX_SECRET} characters; nothing changed"
        raise UsageError(msg)
    return secret


def cmd_repos(args: argparse.Namespace) -> int:
    from pypi_insiders.fetch import repos  # noqa: PLC0415

    loaded = _load(args)
    if args.repos_command == "add":
        return repos.cli_add(loaded, args.source, args.distribution, subdirectory=args.subdirectory,
                             tag_pattern=args.tag_pattern, build=args.build,
                             min_version=args.min_version, credential=args.credential,
                             username=args.username)
    if args.repos_command == "remove":
        return repos.cli_remove(loaded, args.key)
    if args.repos_command == "hook":
        from pypi_insiders.fetch import repo_hooks  # noqa: PLC0415

        return repo_hooks.cli_hook(loaded, args.key, base_url=args.url)
    return repos.cli_list(loaded, as_json=args.json)


def cmd_update(args: argparse.Namespace) -> int:
    from pypi_insiders.fetch import runner  # noqa: PLC0415

    loaded = _load(args)
    privileges.become_data_owner(loaded.paths.state, loaded.fetch.credentials_dir)
    return runner.cli_update(loaded, args.repos, force=args.force)


def cmd_fetch(args: argparse.Namespace) -> int:
    from pypi_insiders.fetch import runner  # noqa: PLC0415

    loaded = _load(args)
    privileges.become_data_owner(loaded.paths.state, loaded.fetch.credentials_dir)
    return runner.cli_fetch(loaded, trigger=sd.trigger_unit())


def cmd_status(args: argparse.Namespace) -> int:
    from pypi_insiders.fetch import status  # noqa: PLC0415

    loaded = _load(args, reading=True)
    # The upstream cache it refreshes is the service's: as root, written as the service user.
    privileges.become_data_owner(loaded.paths.state)
    section = None
    if loaded.upstream.fallback == "mirror":
        from pypi_insiders.mirror import mirror  # noqa: PLC0415

        try:
            section = mirror.scanned_now(loaded.paths.cache, loaded.upstream)
        except OSError as error:  # the repositories' status is still worth showing
            print(f"pypi-insiders: cannot read the mirror: {error}", file=sys.stderr)
    return status.cli_status(loaded, as_json=args.json, mirror=section)


def cmd_mirror(args: argparse.Namespace) -> int:
    from pypi_insiders.mirror import commands  # noqa: PLC0415

    return commands.run(args)


def cmd_units(args: argparse.Namespace) -> int:
    """The system units for the system config (the Debian package), the user's own otherwise."""
    from pypi_insiders import units  # noqa: PLC0415

    loaded = _load(args)
    follow, lines = getattr(args, "follow", False), getattr(args, "lines", 50)
    if config.locations_for(loaded.path).name == "system":
        return units.cli(args.command, args.unit_command, follow=follow, lines=lines)
    from pypi_insiders.service import user_services  # noqa: PLC0415

    return user_services.cli(loaded, args.command, args.unit_command, follow=follow, lines=lines,
                             verbose=args.verbose, quiet=args.quiet)


def cmd_watch(args: argparse.Namespace) -> int:
    from pypi_insiders.service import watch  # noqa: PLC0415

    loaded = _load(args)
    privileges.become_data_owner(loaded.paths.state, loaded.fetch.credentials_dir)
    return watch.watch(args.config, loaded)


# --------------------------------------------------------------------------- parser


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the index (what pypi-insiders-index.service runs)")
    listen = f"{config.ServerConfig.host}:{config.ServerConfig.port}"  # the defaults
    p.add_argument("--listen", metavar="HOST:PORT", help=f"address to bind (default {listen})")
    p.add_argument("--store", metavar="DIR", help="directory of distributions to serve")
    p.add_argument("--upstream", metavar="URL", help="simple index for names not held locally")
    p.add_argument("--fallback", choices=config.FALLBACKS,
                   help="what to do for names not held locally")
    p.set_defaults(handler=cmd_serve)


def _users_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("users", help="manage users: who may read and upload which projects")
    users = p.add_subparsers(dest="users_command", required=True, metavar="{add,remove,list}")
    add = users.add_parser("add", help="add or change a user; the secret is read from standard input")
    add.add_argument("name")
    add.add_argument("--token", action="store_true",
                     help="generate a random API token, print it once, and store its hash")
    add.add_argument("--read", metavar="SCOPE", default="*",
                     help="projects the user may read: '*' (default) or comma-separated names")
    add.add_argument("--upload", metavar="SCOPE", default="",
                     help="projects the user may upload to: '*' or comma-separated names (default: none)")
    add.add_argument("--expires", metavar="DAYS", help="the credentials stop working after DAYS days")
    remove = users.add_parser("remove", help="remove a user")
    remove.add_argument("name")
    users.add_parser("list", help="list users")
    p.set_defaults(handler=cmd_users)


def _repos_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("repos", help="manage watched git repositories")
    repos = p.add_subparsers(dest="repos_command", required=True, metavar="{add,list,remove,hook}")
    add = repos.add_parser("add", help="watch a repository (NAMESPACE/PROJECT[:DIST] or a git URL)")
    add.add_argument("source", help="NAMESPACE/PROJECT, NAMESPACE/PROJECT:DISTRIBUTION or a git URL")
    add.add_argument("distribution", nargs="?", help="distribution name (default: from its metadata)")
    add.add_argument("--subdirectory", help="project directory inside the repository")
    add.add_argument("--tag-pattern", metavar="REGEX", help="only tags matching this pattern")
    add.add_argument("--build", choices=["new", "latest"], help="build every new tag or only the latest")
    add.add_argument("--min-version", metavar="VERSION", help="ignore versions below this one")
    add.add_argument("--credential", metavar="NAME", help="credential file name for this repository")
    add.add_argument("--username", help="user name for HTTPS (the token is the password)")
    remove = repos.add_parser("remove", help="stop watching a repository")
    remove.add_argument("key", help="the repository as `repos list` shows it")
    listing = repos.add_parser("list", help="list watched repositories")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    hook = repos.add_parser("hook", help="the webhook URL and secret of a repository, and how to set it up")
    hook.add_argument("key", help="the repository as `repos list` shows it")
    hook.add_argument("--url", metavar="BASE", help="the index's public URL (default: its listen address)")
    p.set_defaults(handler=cmd_repos)


def _mirror_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("mirror", help='maintain the caching mirror (upstream.fallback = "mirror")')
    actions = p.add_subparsers(dest="mirror_command", required=True,
                               metavar="{prefetch,verify,sweep,purge}")
    prefetch = actions.add_parser("prefetch", help="fetch, verify and keep the files of a pinned "
                                                   "requirements file (no resolver)")
    prefetch.add_argument("-r", "--requirement", action="append", required=True, metavar="FILE",
                          help="NAME==VERSION lines, optionally with --hash=sha256:...")
    prefetch.add_argument("--host-only", action="store_true",
                          help="for pins without hashes: only sdists and the wheels this machine can install")
    actions.add_parser("verify", help="re-hash every kept file; delete and list those that differ")
    actions.add_parser("sweep", help="remove dead downloads and evict beyond max_size now")
    purge = actions.add_parser("purge", help="drop a project's mirrored page and files (not prefetched ones)")
    purge.add_argument("name", metavar="NAME")
    p.set_defaults(handler=cmd_mirror)


def _unit_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, what in (("server", "the index service"), ("watcher", "the scheduled fetch")):
        p = sub.add_parser(name, help=f"start, stop or inspect {what} (systemd's units with the "
                           "Debian package; your own user units or background processes otherwise)")
        actions = p.add_subparsers(dest="unit_command", required=True,
                                   metavar="{start,stop,restart,status,logs}")
        for action, verb in (("start", "start"), ("stop", "stop"), ("restart", "restart"),
                             ("status", "show the state of")):
            actions.add_parser(action, help=f"{verb} {what}")
        logs = actions.add_parser("logs", help=f"show the journal of {what}")
        logs.add_argument("-f", "--follow", action="store_true", help="keep printing new entries")
        logs.add_argument("-n", "--lines", type=int, default=50, help="how many entries to show")
        p.set_defaults(handler=cmd_units)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pypi-insiders",
        description="Serve Insiders builds of Python projects under their public names.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _global_options(parser, default=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _serve_parser(sub)
    check = sub.add_parser("check-config", help="validate the configuration and exit")
    check.add_argument("--json", action="store_true", help="print the effective settings as JSON")
    check.add_argument("--reload", action="store_true",
                       help="also fail when the running index needs a restart, not a reload, to apply "
                       "the file (what systemctl reload runs)")
    check.set_defaults(handler=cmd_check_config)
    gen = sub.add_parser("generate", help="regenerate the static index from the store once")
    gen.set_defaults(handler=cmd_generate)
    _users_parser(sub)
    _repos_parser(sub)
    update = sub.add_parser("update", help="fetch watched repositories and build new tags now")
    update.add_argument("repos", nargs="*", metavar="REPO", help="only these (default: all)")
    update.add_argument("--force", action="store_true", help="ignore failure back-off")
    update.set_defaults(handler=cmd_update)
    fetch = sub.add_parser("fetch", help="what the timer runs: update every repository")
    fetch.set_defaults(handler=cmd_fetch)
    watch = sub.add_parser("watch", help="fetch every [fetch] interval until stopped "
                           "(what `watcher start` runs without the system timer)")
    watch.set_defaults(handler=cmd_watch)
    status = sub.add_parser("status", help="show what each watched repository last did")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=cmd_status)
    _unit_parsers(sub)
    maintain.add_parsers(sub)
    _mirror_parser(sub)
    _global_options_everywhere(parser)
    return parser


def config_help(euid: int) -> str:
    """The default as it is for whoever asks: root looks at the system file first, others never
    (the service user does, but it runs no help)."""
    user_file = "~/.config/pypi-insiders/config.toml"
    system = f"{config.SYSTEM_CONFIG} if it exists, else " if euid == 0 else ""
    return (f"config file (default: $PYPI_INSIDERS_CONFIG, else {system}{user_file} if it exists, "
            "else the embedded default)")


def _global_options(parser: argparse.ArgumentParser, *, default: bool) -> None:
    """-c, -v and -q. Below the top level their default is SUPPRESS, so that an option given
    before the command is not reset by the command's parser, which sees it missing."""
    def value(real: object) -> object:
        return real if default else argparse.SUPPRESS
    parser.add_argument("-c", "--config", metavar="PATH", default=value(None),
                        help=config_help(os.geteuid()))
    parser.add_argument("-v", "--verbose", action="count", default=value(0), help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", default=value(False),
                        help="no access log (one line per read of a local project and per refusal)")


def _global_options_everywhere(parser: argparse.ArgumentParser) -> None:
    """`serve -q` and `check-config -c FILE` as well as `-q serve`: every command takes them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                _global_options(child, default=False)
                _global_options_everywhere(child)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    sd.setup_logging(args.verbose, quiet=args.quiet, daemon=args.command in ("serve", "watch"))
    handler: Handler = args.handler
    try:
        return handler(args)
    except InsidersError as error:
        for line in getattr(error, "problems", None) or [str(error)]:
            print(f"pypi-insiders: {line}", file=sys.stderr)
        return error.exit_status
    except KeyboardInterrupt:
        print("pypi-insiders: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141
