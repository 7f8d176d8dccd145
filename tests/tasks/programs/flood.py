"""Writes its pid to $PID_FILE, then prints 1 KiB text_delta events until stopped (no finish)."""

from __future__ import annotations

import os
from pathlib import Path

from vespid.tasks.events import emit_event

Path(os.environ["PID_FILE"]).write_text(str(os.getpid()))
emit_event("worker", status="flooding")
while True:
    emit_event("text_delta", delta="x" * 1024)
