"""Providers: the pluggable part that starts and stops workers, as local processes
(``local.py``) or as actors on a Ray cluster (``ray.py``), behind one interface."""

from __future__ import annotations

from vespid.control.providers.base import (
    GpuLedger,
    Provider,
    RunState,
    WorkerHandle,
    WorkerOrder,
)
from vespid.control.providers.local import LocalProvider
from vespid.control.providers.ray import RayProvider

__all__ = [
    "GpuLedger",
    "LocalProvider",
    "Provider",
    "RayProvider",
    "RunState",
    "WorkerHandle",
    "WorkerOrder",
]
