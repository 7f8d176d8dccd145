"""The ``vespid`` command: a thin layer that parses arguments and calls the library."""

from __future__ import annotations

from vespid.cli.main import main

__all__ = ["main"]
