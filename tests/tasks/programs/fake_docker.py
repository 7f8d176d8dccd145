"""Stands in for the docker CLI: ``info`` answers a version; ``run`` reports its argv
and the environment its ``-e NAME`` flags would pass, as task events."""

from __future__ import annotations

import os
import sys

from vespid.tasks.events import emit_event

args = sys.argv[1:]
if args[:1] == ["info"]:
    print("27.0-fake")
    sys.exit(0)
if args[:1] == ["run"]:
    names = [args[i + 1] for i, arg in enumerate(args) if arg == "-e"]
    emit_event("connection", status="connected")
    emit_event("worker", status="argv", argv=args, env={n: os.environ.get(n) for n in names})
    emit_event("finish", status="completed")
    sys.exit(0)
sys.exit(f"fake docker: unexpected {args}")
