"""The model server's process group, as the launcher names it: ``VESPID_MODEL_PID`` (the
pid that leads the group) and ``VESPID_MODEL_PID_START`` (its start time in clock ticks,
``/proc/PID/stat`` field 22). The worker signals that group only while the pid still has
that start time, so a pid reused by another program is never touched.

Blocking (reads ``/proc``, waits): call these in a thread from the event loop.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from typing import Final

from vespid.servers.process import proc_stat, process_start_time
from vespid.worker.settings import WorkerSettings

__all__ = ["ModelProcess"]

POLL_S: Final = 0.05


@dataclass(frozen=True, slots=True)
class ModelProcess:
    """The model server's pid and the start time that proves it is still that process."""

    pid: int
    start_time: int

    @classmethod
    def of(cls, settings: WorkerSettings) -> ModelProcess | None:
        """The process VESPID_MODEL_PID and VESPID_MODEL_PID_START name, if set."""
        if settings.model_pid is None or settings.model_pid_start is None:
            return None
        return cls(settings.model_pid, settings.model_pid_start)

    def alive(self) -> bool:
        """Whether the pid still names the process the launcher started."""
        return process_start_time(self.pid) == self.start_time

    def signal_group(self, signum: signal.Signals) -> bool:
        """Send ``signum`` to the process group; False (nothing sent) when the pid no
        longer names the model server."""
        if not self.alive():
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)
        return True

    def stop(self, grace_s: float = 5.0) -> bool:
        """SIGTERM the group (SIGCONT too, in case it was stopped to sleep), SIGKILL it
        after ``grace_s`` if its leader lives on; False when the pid was not ours."""
        if not self.signal_group(signal.SIGTERM):
            return False
        self.signal_group(signal.SIGCONT)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if not self.alive() or _zombie(self.pid):
                return True
            time.sleep(POLL_S)
        self.signal_group(signal.SIGKILL)
        return True


def _zombie(pid: int) -> bool:
    """A child that has exited but not been reaped counts as stopped."""
    fields = proc_stat(pid)
    return fields is not None and fields[0] == b"Z"
