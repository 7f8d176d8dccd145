"""Compatibility layers for code written for other workers (see ``vespid.compat.pyworker``)."""

from __future__ import annotations

__all__: list[str] = []
