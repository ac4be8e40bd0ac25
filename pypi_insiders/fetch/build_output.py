"""What a build's output says: its end (bounded), the line naming the cause, missing requirements.

The full output goes to the journal when a build fails; the one line kept in the state and shown
by `status` is the backend's last error, with paths in the (deleted) checkout made relative.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

TAIL_LINES = 200
TAIL_BYTES = 64 * 1024
# what `python -m build --no-isolation` says when the backend asks for more than the environment has
MISSING_DEPENDENCIES = b"Missing dependencies"


def output_tail(path: Path) -> str:
    """The end of a build's output, bounded in lines and bytes: the error is at the end."""
    with path.open("rb") as stream:
        size = stream.seek(0, os.SEEK_END)
        stream.seek(max(0, size - TAIL_BYTES))
        data = stream.read()
    lines = data.decode("utf-8", "replace").splitlines()
    return "\n".join(lines[-TAIL_LINES:])


def missing_dependencies(log_path: Path) -> list[str]:
    """What build's "Missing dependencies:" lists (one requirement a line, tab-indented)."""
    lines = output_tail(log_path).splitlines()
    for number, line in enumerate(lines):
        if MISSING_DEPENDENCIES.decode() in line:
            found = []
            for item in lines[number + 1:]:
                if not item.startswith("\t"):
                    break
                found.append(item.strip().rsplit(" -> ", 1)[-1])
            return found
    return []


# build's own closing lines, which say that something failed but not what
_GENERIC = ("Backend subprocess exited", "Traceback (most recent call last)", "ERROR Missing dependencies")
_CAUSE = re.compile(r"(ERROR\s|error:|fatal:|[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b)")
CAUSE_CHARS = 300


def failure_cause(log_path: Path, source: Path) -> str:
    """The line of the build's output that says why it failed: the backend's last error.

    Paths in the build's checkout are made relative to it (it is deleted after the build).
    """
    lines = [line.strip() for line in output_tail(log_path).splitlines() if line.strip()]
    useful = [line for line in lines if not any(g in line for g in _GENERIC)]
    last = useful[-1] if useful else "no output"
    cause = next((line for line in reversed(useful) if _CAUSE.match(line)), last)
    cause = cause.removeprefix("ERROR ").replace(f"{source}/", "").replace(str(source), ".")
    return cause if len(cause) <= CAUSE_CHARS else cause[:CAUSE_CHARS - 1] + "\u2026"
