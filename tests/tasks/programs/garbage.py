"""Prints every kind of bad line between good events, then finishes normally."""

from __future__ import annotations

import sys

from vespid.tasks.events import emit_event

emit_event("connection", status="connected")
for line in [
    "Loading checkpoint shards: 100%",
    "",
    "[1, 2, 3]",
    '{"no_event": true}',
    '{"event": "text_delta", "delta": 5}',
    '{"event": "finish", "status": "done"}',
    '{"event": "text", "content": "half',
    '{"event": "gpu_stats", "util": 0.97}',
]:
    print(line, flush=True)
sys.stdout.buffer.write(b'{"event": "text",\r"content": "carriage"}\n\xff\xfe\n')
sys.stdout.flush()
emit_event("text", content="still fine")
emit_event("finish", status="completed")
