"""pypi-insiders: a self-hosted index that serves Insiders builds under their public names."""

from __future__ import annotations

__version__ = "0.1.0"
