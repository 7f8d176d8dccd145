#!/usr/bin/env python3
"""Text worker: streams a reply word by word (text_delta), then the whole text, then finish.

Each task's input is one JSON line on stdin, e.g. ``{"prompt": "Hello"}``. The
program answers every line it reads, so it serves one task when stdin ends after
the first line (one-off) and keeps serving while stdin stays open (a session
preset). Run in a terminal, it answers a built-in prompt once. ``WORD_SECONDS``
(default 0.05) is the pause between words. It needs nothing but Python.
"""

import json
import os
import sys
import time


def emit_event(event_type: str, data: dict) -> None:
    print(json.dumps({"event": event_type, **data}), flush=True)


def log(message: str) -> None:
    print(f"text-worker: {message}", file=sys.stderr, flush=True)


def answer(task: dict, word_s: float) -> None:
    prompt = task.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        emit_event("finish", {"status": "failed", "message": "input needs a 'prompt' string"})
        return
    emit_event("worker", {"status": "working", "message": "Generating"})
    words = f"You said: {prompt}".split()
    for i, word in enumerate(words):
        time.sleep(word_s)
        emit_event("text_delta", {"delta": word if i == 0 else " " + word})
    emit_event("text", {"content": " ".join(words)})
    emit_event("finish", {"status": "completed"})


def main() -> None:
    word_s = float(os.environ.get("WORD_SECONDS", "0.05"))
    emit_event("connection", {"status": "connected"})
    emit_event(
        "worker", {"status": "ready", "message": f"GPU {os.environ.get('GPU_DEVICE') or 'none'}"}
    )
    if sys.stdin.isatty():
        answer({"prompt": "Hello World!"}, word_s)
        return
    while line := sys.stdin.readline():
        try:
            task = json.loads(line)
        except ValueError:
            log(f"ignoring input that is not JSON: {line[:80]!r}")
            continue
        answer(task if isinstance(task, dict) else {}, word_s)
    log("stdin closed; exiting")


if __name__ == "__main__":
    main()
