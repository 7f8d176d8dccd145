"""Security-test fixtures: the control plane's, re-exported (found by name)."""

from __future__ import annotations

from tests.control.conftest import MakeControl, http, make_control
from tests.worker.conftest import blockbuster, no_leaked_tasks

__all__ = ["MakeControl", "blockbuster", "http", "make_control", "no_leaked_tasks"]
