"""The fleet: every worker the control plane knows, fed by the workers' own reports.

This is the stateful half of autoscaling (the policy is the pure half): it ingests
``/worker_status/`` reports, ignores stale or unknown ones, marks workers that stop
reporting, and builds the frozen snapshot the policy decides on. It also keeps the
router's books of recent demand: load routed, queued, and refused.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

from vespid.control.models import EndpointConfig
from vespid.control.policy import ScalingParams, ScalingSnapshot, WorkerPhase, WorkerView
from vespid.control.providers.base import WorkerHandle

__all__ = ["Fleet", "WorkerRecord"]

# A worker reports at least every 10 s; three missed reports and it is out.
STALE_AFTER_S: Final = 30.0
RATE_WINDOW_S: Final = 30.0


@dataclass
class WorkerRecord:
    """One worker, as the control plane sees it."""

    handle: WorkerHandle
    phase: WorkerPhase = WorkerPhase.STARTING
    last_report_at: float | None = None
    cur_load: float = 0.0
    max_perf: float | None = None
    error_msg: str = ""
    in_flight: int = 0
    sessions: int = 0
    routed_load: float = 0.0  # routed since its last report (not yet in cur_load)
    loadtime_s: float | None = None
    served_total: float = 0.0
    ready_after_s: float | None = None  # from its start to its first ready report (cold start)
    request_key: bytes | None = None  # its HMAC key: routes to it are tagged, not RSA-signed

    @property
    def worker_id(self) -> int:
        return self.handle.worker_id

    @property
    def url(self) -> str:
        return self.handle.url

    def est_wait_s(self) -> float:
        """(cur_load + load routed since the report) / max_perf; inf if not benchmarked."""
        if not self.max_perf:
            return math.inf
        return (self.cur_load + self.routed_load) / self.max_perf

    def view(self) -> WorkerView:
        return WorkerView(
            worker_id=str(self.worker_id),
            state=self.phase,
            cur_load=self.cur_load + self.routed_load,
            max_perf=self.max_perf,
            sessions=self.sessions,
            in_flight=max(0, self.in_flight - self.sessions),
            started_at=self.handle.started_at,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "endpoint": self.handle.endpoint,
            "url": self.url,
            "state": self.phase.value,
            "cur_load": self.cur_load,
            "max_perf": self.max_perf,
            "in_flight": self.in_flight,
            "sessions": self.sessions,
            "error_msg": self.error_msg,
            "loadtime_s": self.loadtime_s,
            "ready_after_s": self.ready_after_s,
            "served_total": self.served_total,
            "started_at": self.handle.started_at,
        }


@dataclass
class EndpointBooks:
    """Recent demand at the router for one endpoint."""

    arrivals: deque[tuple[float, float]] = field(default_factory=deque)  # (time, cost)
    # The last throughput a worker of this endpoint measured: what a new one is assumed
    # to reach until it reports its own (better than a fixed guess on a slow model).
    last_perf: float | None = None
    rejections: deque[tuple[float, float]] = field(default_factory=deque)
    last_activity_at: float | None = None

    @staticmethod
    def _rate(events: deque[tuple[float, float]], now: float) -> float:
        while events and events[0][0] < now - RATE_WINDOW_S:
            events.popleft()
        return sum(cost for _, cost in events) / RATE_WINDOW_S


class Fleet:
    """Workers by id, and demand by endpoint. Event-loop only."""

    def __init__(self) -> None:
        self.workers: dict[int, WorkerRecord] = {}
        self.books: dict[str, EndpointBooks] = {}

    def add(self, handle: WorkerHandle) -> WorkerRecord:
        record = WorkerRecord(handle)
        self.workers[handle.worker_id] = record
        return record

    def remove(self, worker_id: int) -> WorkerRecord | None:
        return self.workers.pop(worker_id, None)

    def of(self, endpoint: str) -> list[WorkerRecord]:
        return [w for w in self.workers.values() if w.handle.endpoint == endpoint]

    def _books(self, endpoint: str) -> EndpointBooks:
        return self.books.setdefault(endpoint, EndpointBooks())

    # -- reports -------------------------------------------------------------

    def ingest(self, report: dict[str, Any], now: float | None = None) -> WorkerRecord | None:
        """Apply a ``/worker_status/`` report; None if the worker is unknown."""
        record = self.workers.get(int(report["id"]))
        if record is None:
            return None
        now = time.monotonic() if now is None else now
        record.last_report_at = now
        record.cur_load = float(report.get("cur_load", 0.0))
        record.routed_load = 0.0
        # Sessions are tickets in num_requests_working too; num_sessions tells them apart.
        record.in_flight = int(report.get("num_requests_working", 0))
        record.sessions = int(report.get("num_sessions", 0))
        # A worker's own 429s (rej_load) are not demand here: the client re-routes them,
        # so they come back through the router's queue; counting both would overshoot.
        record.served_total += float(report.get("cur_perf", 0.0))
        max_perf = float(report.get("max_perf", 0.0))
        record.max_perf = max_perf if max_perf > 0 else record.max_perf
        if max_perf > 0:
            self._books(record.handle.endpoint).last_perf = max_perf
        if report.get("loadtime"):
            record.loadtime_s = float(report["loadtime"])
        record.error_msg = str(report.get("error_msg") or "")
        if record.error_msg:
            record.phase = WorkerPhase.ERRORED
        elif record.max_perf:
            record.phase = WorkerPhase.READY
            if record.ready_after_s is None:
                record.ready_after_s = max(0.0, time.time() - record.handle.started_at)
        if record.cur_load > 0 or float(report.get("new_load", 0.0)) > 0:
            self._books(record.handle.endpoint).last_activity_at = time.time()
        return record

    def mark_stale(self, now: float | None = None) -> list[WorkerRecord]:
        """Workers that stopped reporting: errored, so the policy replaces them."""
        now = time.monotonic() if now is None else now
        stale = []
        for record in self.workers.values():
            last = record.last_report_at
            if (
                last is not None
                and now - last > STALE_AFTER_S
                and record.phase is not WorkerPhase.ERRORED
            ):
                record.phase = WorkerPhase.ERRORED
                record.error_msg = f"no report for {now - last:.0f} s"
                stale.append(record)
        return stale

    # -- demand --------------------------------------------------------------

    def note_arrival(self, endpoint: str, cost: float) -> None:
        books = self._books(endpoint)
        books.arrivals.append((time.monotonic(), cost))
        books.last_activity_at = time.time()

    def note_rejection(self, endpoint: str, cost: float) -> None:
        books = self._books(endpoint)
        books.rejections.append((time.monotonic(), cost))
        books.last_activity_at = time.time()

    def snapshot(
        self, endpoint: EndpointConfig, *, queued_load: float, queued_requests: int
    ) -> ScalingSnapshot:
        now_mono = time.monotonic()
        books = self._books(endpoint.name)
        s = endpoint.scaling
        params = ScalingParams(
            min_load=s.min_load,
            target_util=s.target_util,
            cold_mult=s.cold_mult,
            cold_workers=s.cold_workers,
            max_workers=s.max_workers,
            inactivity_timeout_s=s.inactivity_timeout,
            max_queue_time_s=s.max_queue_time,
            target_queue_time_s=s.target_queue_time,
            scale_down_delay_s=s.scale_down_delay,
            **({"default_perf": books.last_perf} if books.last_perf else {}),
        )
        if queued_requests:
            books.last_activity_at = time.time()
        return ScalingSnapshot(
            now=time.time(),
            params=params,
            workers=tuple(w.view() for w in self.of(endpoint.name)),
            queued_load=queued_load,
            queued_requests=queued_requests,
            rejected_load_rate=EndpointBooks._rate(books.rejections, now_mono),
            arrival_rate=EndpointBooks._rate(books.arrivals, now_mono),
            last_activity_at=books.last_activity_at,
        )
