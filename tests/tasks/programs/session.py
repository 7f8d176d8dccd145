"""A session program: answers every input line on stdin, from one process, until EOF."""

from __future__ import annotations

import json
import os
import sys

from vespid.tasks.events import emit_event

emit_event("connection", status="connected")
count = 0
while line := sys.stdin.readline():
    count += 1
    task = json.loads(line)
    emit_event("text", content=f"{task.get('prompt')} #{count} from {os.getpid()}")
    emit_event("finish", status="completed")
