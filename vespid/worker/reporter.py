"""Reports to the autoscaler: ``/worker_status/`` and ``/delete_requests/``.

Cadence: a status report every second while something changed, else every
``REPORT_INTERVAL_S`` (10 s, also while loading); finished requests are reported once
a second. Each report goes to the first address in REPORT_ADDR that accepts it. While
reports fail, the status report is tried again every second (not every interval), so a
control plane that comes back hears from every worker within about a second; what a
failed report carried goes with the next one. The first failure is logged, and the
recovery, not every try. Reports run in their own task, so a slow or dead autoscaler
never delays a request.

``last_ok`` is when a report last got a 2xx answer (``vespid.worker.orphan`` reads it).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Sized
from typing import Any, Final

import aiohttp

from vespid import __version__
from vespid.protocol.wire import (
    DELETE_REQUESTS_PATH,
    REPORT_INTERVAL_S,
    WORKER_STATUS_PATH,
    DeleteRequestsReport,
    WorkerStatusReport,
)
from vespid.worker.admission import Admission
from vespid.worker.books import Books, ReportCounters
from vespid.worker.lifecycle import Lifecycle, WorkerState
from vespid.worker.settings import WorkerSettings

__all__ = ["Reporter"]

log = logging.getLogger("vespid.worker")

TICK_S: Final = 1.0
IDLE_EVERY_S: Final = REPORT_INTERVAL_S
POST_TIMEOUT_S: Final = 5.0


class Reporter:
    """Sends the worker's state to the autoscaler; one task, started with the app."""

    def __init__(
        self,
        settings: WorkerSettings,
        books: Books,
        lifecycle: Lifecycle,
        session: aiohttp.ClientSession,
        sessions: Sized = (),
        admission: Admission | None = None,
    ) -> None:
        self.settings = settings
        self.admission = admission  # its slots go in the reports (None: reported as 0)
        self.books = books
        self.lifecycle = lifecycle
        self._session = session
        self.sessions = sessions  # the worker's open sessions (only their count is read)
        self._loadtime_sent = False
        self._last_state: WorkerState | None = None
        self._last_sent = float("-inf")
        self.sent = 0
        self.failed = 0
        self.last_ok = time.monotonic()  # the orphan clock starts with the worker
        self._failing_since: float | None = None
        self._retry = False  # the last status report failed: try again next tick

    async def _disk_usage_gb(self) -> float:
        usage = await asyncio.to_thread(shutil.disk_usage, "/")
        return round(usage.used / 1e9, 3)

    async def status_report(self, counters: ReportCounters) -> WorkerStatusReport:
        """The report body; ``counters`` are the changes since the last report."""
        disk_usage = await self._disk_usage_gb()
        s = self.settings
        life = self.lifecycle
        working = self.books.working
        loadtime = 0.0
        if life.loadtime_s is not None and not self._loadtime_sent:
            loadtime = round(life.loadtime_s, 3)
        return WorkerStatusReport(
            id=s.container_id,
            mtoken=s.master_token,
            version=__version__,
            loadtime=loadtime,
            new_load=round(counters.new_load, 6),
            cur_load=round(self.books.cur_load, 6),
            rej_load=round(counters.rej_load, 6),
            max_perf=life.max_perf or 0.0,
            cur_perf=round(counters.served_load, 6),
            error_msg=life.error_msg if life.state is WorkerState.ERRORED else "",
            num_requests_working=len(working),
            num_requests_recieved=counters.received,
            additional_disk_usage=0.0,
            disk_usage=disk_usage,
            working_request_idxs=sorted(t.request_idx for t in working),
            cur_capacity=0,
            max_capacity=0,
            url=s.public_url or "",
            num_sessions=len(self.sessions),
            waiting_load=round(self.books.waiting_load, 6),
            parked=life.state is WorkerState.PARKED,
            waiting_age=round(self.books.waiting_age(time.time()), 3),
            slots=(self.admission.limit or 0) if self.admission else 0,
            free_slots=self.admission.free_slots if self.admission else 0,
        )

    async def post(self, path: str, body: Any) -> bool:
        """POST to the first address that accepts (one try each); never raises."""
        timeout = aiohttp.ClientTimeout(total=POST_TIMEOUT_S)
        problems = []
        for addr in self.settings.report_addr:
            try:
                async with self._session.post(addr + path, json=body, timeout=timeout) as r:
                    await r.read()
                    if r.status < 300:
                        self._succeeded()
                        return True
                    problems.append(f"{addr} answered {r.status}")
            except (TimeoutError, aiohttp.ClientError) as exc:
                problems.append(f"{addr}: {str(exc) or type(exc).__name__}")
        self._failed(path, "; ".join(problems))
        return False

    def _succeeded(self) -> None:
        self.sent += 1
        self.last_ok = time.monotonic()
        if self._failing_since is not None:
            log.info(
                "reports reach the control plane again (after %.1f s of failures)",
                self.last_ok - self._failing_since,
            )
            self._failing_since = None

    def _failed(self, path: str, problem: str) -> None:
        self.failed += 1
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.warning(
                "report %s failed (%s); retrying every %g s, logging again on recovery",
                path,
                problem,
                TICK_S,
            )

    def _due(self, now: float) -> bool:
        if self._retry:
            return True
        state_changed = self.lifecycle.state is not self._last_state
        if state_changed or (self.lifecycle.loadtime_s is not None and not self._loadtime_sent):
            return True
        if self.books.changed and self.lifecycle.state is not WorkerState.LOADING:
            return now - self._last_sent >= TICK_S
        return now - self._last_sent >= IDLE_EVERY_S

    async def tick(self) -> None:
        """One round: a status report if due, then finished requests."""
        now = time.monotonic()
        if self._due(now):
            self.books.changed = False
            state = self.lifecycle.state
            counters = self.books.take_counters()
            report = await self.status_report(counters)
            self._last_sent = now
            self._retry = not await self.post(WORKER_STATUS_PATH, report.model_dump(mode="json"))
            if not self._retry:
                self._last_state = state
                if report.loadtime:
                    self._loadtime_sent = True
            else:
                self.books.restore_counters(counters)  # the next report carries them
        finished = self.books.take_finished()
        if finished:
            body = DeleteRequestsReport(
                worker_id=self.settings.container_id,
                mtoken=self.settings.master_token,
                requests=finished,
            )
            if not await self.post(DELETE_REQUESTS_PATH, body.model_dump(mode="json")):
                self.books.restore_finished(finished)  # the next report carries them

    async def run(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(TICK_S)
