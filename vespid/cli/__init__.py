"""The ``vespid`` command: a thin layer that parses arguments and calls the library.

Its entry point is ``vespid.cli.main:main``; nothing is imported here, so that
``python -m vespid.worker`` loads only what the worker needs.
"""

from __future__ import annotations

__all__: list[str] = []
