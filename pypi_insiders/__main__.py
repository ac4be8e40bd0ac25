"""Allow `python3 -m pypi_insiders`, which is how the builder and tests find this very interpreter."""

from __future__ import annotations

import sys

from pypi_insiders.cli import main

sys.exit(main())
