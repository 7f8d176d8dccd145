"""Providers: the pluggable part that starts and stops workers (local processes today)."""

from __future__ import annotations

from vespid.control.providers.base import Provider, RunState, WorkerHandle
from vespid.control.providers.local import LocalProvider

__all__ = ["LocalProvider", "Provider", "RunState", "WorkerHandle"]
