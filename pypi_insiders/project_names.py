"""Project names: which strings are one (PEP 508) and which are already normalized (PEP 503).

One spelling of each for every stage: the config's `public_projects`, user scopes, the URLs
the web answers and the files the index publishes all agree on what a name is. Normalizing
itself is packaging's `canonicalize_name`.
"""

from __future__ import annotations

import re
from typing import Final

# PEP 508: letters, digits, ".", "_" and "-", beginning and ending with a letter or digit.
VALID: Final = re.compile(r"[a-z0-9]|[a-z0-9][a-z0-9._-]*[a-z0-9]", re.IGNORECASE)
# PEP 503's normalized form: lower case, runs of "-", "_", "." made one "-".
NORMALIZED: Final = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def is_valid(name: str) -> bool:
    return VALID.fullmatch(name) is not None


def is_normalized(name: str) -> bool:
    return NORMALIZED.fullmatch(name) is not None
