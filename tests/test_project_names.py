"""`project_names`: the one spelling of a valid and of a normalized project name."""

from __future__ import annotations

import pytest
from packaging.utils import canonicalize_name

from pypi_insiders.project_names import is_normalized, is_valid


@pytest.mark.parametrize(("name", "valid", "normalized"), [
    ("demo", True, True),
    ("demo-pkg", True, True),
    ("a", True, True),
    ("0", True, True),
    ("Demo_Pkg", True, False),
    ("demo.pkg", True, False),
    ("demo--pkg", True, False),
    ("DEMO", True, False),
    ("-demo", False, False),
    ("demo-", False, False),
    ("demo pkg", False, False),
    ("démo", False, False),
    ("", False, False),
    ("demo/pkg", False, False),
])
def test_project_names_valid_and_normalized(name: str, valid: bool, normalized: bool) -> None:
    assert is_valid(name) is valid
    assert is_normalized(name) is normalized
    if valid:
        assert is_normalized(canonicalize_name(name))
        assert is_normalized(name) is (canonicalize_name(name) == name)
