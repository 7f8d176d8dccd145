"""Load-test fixtures: the client suite's stand-in stack and the control plane's fixtures,
re-exported (found by name)."""

from __future__ import annotations

from tests.client.conftest import Stack, backend, stack
from tests.control.conftest import MakeControl, make_control
from tests.worker.conftest import (
    MakeWorker,
    autoscaler,
    blockbuster,
    http,
    make_worker,
    no_leaked_tasks,
)

__all__ = [
    "MakeControl",
    "MakeWorker",
    "Stack",
    "autoscaler",
    "backend",
    "blockbuster",
    "http",
    "make_control",
    "make_worker",
    "no_leaked_tasks",
    "stack",
]
