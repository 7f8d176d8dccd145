"""Orphan safety (``VESPID_ORPHAN_TIMEOUT``): a worker whose control plane has not answered
its reports for that many seconds stops its model server and itself.

The control plane that started the worker may restart and adopt it again; while it is
away the worker keeps serving and keeps reporting (every second, see
``vespid.worker.reporter``). Only when no report got a 2xx answer for the whole timeout
(counted from the worker's start, so a worker that never reached its control plane is
covered too) does it log one line, stop the model server's process group
(``VESPID_MODEL_PID``, only while that pid still has ``VESPID_MODEL_PID_START``; see
``vespid.worker.model_process``) and set the worker's ``orphaned`` event, on which
``vespid.worker.serve`` exits. Unset or 0: never (Vast's workers: Vast stops them).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final

from vespid.worker.model_process import ModelProcess
from vespid.worker.reporter import Reporter
from vespid.worker.settings import WorkerSettings

__all__ = ["OrphanWatch"]

log = logging.getLogger("vespid.worker")

CHECK_EVERY_S: Final = 0.5
STOP_GRACE_S: Final = 5.0


class OrphanWatch:
    """Watches the reporter's last answered report; one task, started with the worker."""

    def __init__(
        self, settings: WorkerSettings, reporter: Reporter, orphaned: asyncio.Event
    ) -> None:
        self._timeout_s = settings.orphan_timeout_s
        self._reporter = reporter
        self._orphaned = orphaned
        self._model = ModelProcess.of(settings)
        self._where = ", ".join(settings.report_addr)

    def silent_for_s(self) -> float:
        return time.monotonic() - self._reporter.last_ok

    async def run(self) -> None:
        """Return once orphaned (its model server stopped and ``orphaned`` set)."""
        while True:
            left = self._timeout_s - self.silent_for_s()
            if left <= 0:
                break
            await asyncio.sleep(min(CHECK_EVERY_S, left))
        model = self._model
        log.error(
            "no report answered by %s for %.1f s (VESPID_ORPHAN_TIMEOUT %g s): "
            "stopping %sthis worker",
            self._where,
            self.silent_for_s(),
            self._timeout_s,
            "the model server and " if model else "",
        )
        if model is not None and not await asyncio.to_thread(model.stop, STOP_GRACE_S):
            log.warning(
                "VESPID_MODEL_PID %d is no longer the model server (its start time is not "
                "VESPID_MODEL_PID_START %d): left alone",
                model.pid,
                model.start_time,
            )
        self._orphaned.set()
