"""Security-test fixtures: the control plane's and the worker's, re-exported (found by name)."""

from __future__ import annotations

from tests.control.conftest import MakeControl, http, make_control
from tests.worker.conftest import (
    autoscaler,
    backend,
    blockbuster,
    make_signed_worker,
    make_worker,
    no_leaked_tasks,
)

__all__ = [
    "MakeControl",
    "autoscaler",
    "backend",
    "blockbuster",
    "http",
    "make_control",
    "make_signed_worker",
    "make_worker",
    "no_leaked_tasks",
]
