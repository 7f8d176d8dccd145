"""Reports what it was given, then waits for SIGUSR1 (forever without it) and finishes.

With ``--ignore-term`` it ignores SIGTERM, so only SIGKILL stops it.

Its first event carries its pid, its input (stdin's first line) and its environment,
so a test can check them, signal it, or see that it was killed.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from vespid.tasks.events import emit_event

signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})  # before anyone knows the pid
if "--ignore-term" in sys.argv:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
line = sys.stdin.readline()
names = ("MODEL_NAME", "MODEL_PATH", "GPU_DEVICE", "CUDA_VISIBLE_DEVICES", "TASK_ID",
         "TASK_METADATA", "FROM_PRESET", "MASTER_TOKEN")  # fmt: skip
emit_event(
    "worker",
    status="holding",
    pid=os.getpid(),
    input=json.loads(line) if line else None,
    env={name: os.environ.get(name) for name in names},
    cwd=os.getcwd(),
)
signal.sigwait({signal.SIGUSR1})
emit_event("text", content=f"released on GPU {os.environ.get('GPU_DEVICE')}")
emit_event("finish", status="completed")
