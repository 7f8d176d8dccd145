"""Starts a child that would outlive it, reports the child's pid, then ends as told.

- ``--finish``: print a finish and exit (else exit with code 4, with no finish);
- ``--hang``: wait after the report (for a timeout, a cancel, or shutdown);
- ``--keep-stdout``: the child inherits stdout (else it gets /dev/null), so stdout
  does not end while the child runs;
- ``--ignore-term``: the child ignores SIGTERM, so only SIGKILL ends it.

The child sleeps for an hour: a test that finds it still running has found a leak.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from vespid.tasks.events import emit_event

CHILD = """
import os, signal, sys, time
if sys.argv[1] == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
os.write(int(sys.argv[2]), b"ready")  # its signal handling is in place
time.sleep(3600)
"""

ready_r, ready_w = os.pipe()
child = subprocess.Popen(
    [sys.executable, "-c", CHILD, "ignore" if "--ignore-term" in sys.argv else "", str(ready_w)],
    stdin=subprocess.DEVNULL,
    stdout=None if "--keep-stdout" in sys.argv else subprocess.DEVNULL,
    pass_fds=(ready_w,),
)
os.close(ready_w)
os.read(ready_r, 5)
emit_event("worker", status="spawned", child=child.pid)
if "--hang" in sys.argv:
    time.sleep(3600)
if "--finish" in sys.argv:
    emit_event("finish", status="completed")
    sys.exit(0)
sys.exit(4)
