#!/usr/bin/env python3
"""Loading worker: simulates loading a model onto its GPU, a short run, and unloading.

A one-off task program for vespid (see docs/tasks.md): configuration comes from the
environment, one JSON event per line goes to stdout, logs go to stderr. It needs
nothing but Python. ``LOAD_STEPS`` (default 5) and ``STEP_SECONDS`` (default 0.5)
set how many progress events loading and unloading take, and how slowly.
"""

import json
import os
import sys
import time


def emit_event(event_type: str, data: dict) -> None:
    print(json.dumps({"event": event_type, **data}), flush=True)


def log(message: str) -> None:
    print(f"loading-worker: {message}", file=sys.stderr, flush=True)


def main() -> None:
    model = os.environ.get("MODEL_NAME", "test-loading")
    model_path = os.environ.get("MODEL_PATH", "/models")
    gpu = os.environ.get("GPU_DEVICE") or "none"
    steps = int(os.environ.get("LOAD_STEPS", "5"))
    step_s = float(os.environ.get("STEP_SECONDS", "0.5"))

    emit_event("connection", {"status": "connected"})
    emit_event("worker", {"status": "initializing", "message": f"Starting up on GPU {gpu}"})
    log(f"model {model} from {model_path} on GPU {gpu}")

    for step in range(1, steps + 1):
        time.sleep(step_s)
        percent = step * 100 // steps
        emit_event(
            "worker",
            {"status": "loading", "message": f"Loading {model}... {percent}%", "progress": percent},
        )
    emit_event("worker", {"status": "ready", "message": f"{model} loaded"})

    emit_event("text", {"content": f"Model {model} loaded on GPU {gpu} and ready."})

    for step in range(steps, 0, -1):
        time.sleep(step_s / 2)
        percent = (step - 1) * 100 // steps
        emit_event(
            "worker",
            {"status": "cleaning_up", "message": f"Unloading {model}... {percent}% left"},
        )
    log("unloaded")
    emit_event("finish", {"status": "completed"})


if __name__ == "__main__":
    main()
