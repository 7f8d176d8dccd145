"""Launchers for model servers that vespid can start itself (for the demo and local workers)."""

from __future__ import annotations

__all__: list[str] = []
