"""Prints one event, a traceback-like line on stderr, then exits with code 3 (no finish)."""

from __future__ import annotations

import sys

from vespid.tasks.events import emit_event

emit_event("connection", status="connected")
print("Traceback (most recent call last): out of GPU memory", file=sys.stderr, flush=True)
sys.exit(3)
