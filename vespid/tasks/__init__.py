"""Task programs: GPU jobs that print JSON events, run by the worker (``VESPID_TASKS``).

``events`` is the protocol (and ``emit_event`` for task authors; importing it stays
cheap), ``presets`` reads ``model_presets.yaml``, ``runner`` starts the programs on
the GPU pool, and ``server`` serves them over HTTP as the worker's backend. See
docs/tasks.md.
"""

from __future__ import annotations

from vespid.tasks.events import TaskEvent, check_event, emit_event, parse_line

__all__ = ["TaskEvent", "check_event", "emit_event", "parse_line"]
