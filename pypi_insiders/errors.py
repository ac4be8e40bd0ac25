"""Every error a user can cause has its own type here, so the CLI alone decides how it is shown.

Each one carries a message meant to be printed as it is: one line that names the
file, key or input at fault. Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class InsidersError(Exception):
    """Base of every expected failure; `exit_status` is what the CLI exits with."""

    exit_status = 1


class ConfigError(InsidersError):
    """The configuration (a file, a key, a command-line override) is unusable."""

    exit_status = 2

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class UsageError(InsidersError):
    """A command was called with arguments that cannot work."""

    exit_status = 2


class AddressInUseError(InsidersError):
    """The listen address is taken by another program, or not on this host yet (at boot): unlike
    a configuration error, it goes away on its own, so the index unit restarts on this status."""

    exit_status = 69  # EX_UNAVAILABLE; the unit's RestartForceExitStatus= names it


class InvalidDistributionError(InsidersError):
    """A file is not a valid distribution: its name does not parse or its archive is broken."""


class StoreError(InsidersError):
    """A file cannot be added to the store (it exists with other bytes, or the disk refused it)."""


class FilenameReusedError(StoreError):
    """The filename was published before and its file is gone: a name never comes back."""


class UploadError(InsidersError):
    """An upload is refused; `status` is the HTTP status the client gets."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class CredentialError(InsidersError):
    """A credential is missing, unreadable or too widely readable."""


class FetchError(InsidersError):
    """A repository could not be fetched (unreachable, refused, not a git repository)."""


class BuildError(InsidersError):
    """A build failed, timed out, or produced files that do not match the tag."""


class LockedError(InsidersError):
    """Another run holds the lock (the timer and a manual update must not overlap)."""

    exit_status = 75  # EX_TEMPFAIL: try again later


class SystemdError(InsidersError):
    """systemctl or journalctl cannot do what was asked (systemd not running, unit missing)."""


class ServiceError(InsidersError):
    """A background server or watcher cannot be started or stopped; may carry its log's end."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))
