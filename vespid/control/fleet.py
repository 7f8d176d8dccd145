"""The fleet: every worker the control plane knows, fed by the workers' own reports.

This is the stateful half of autoscaling (the policy is the pure half): it ingests
``/worker_status/`` reports, ignores unknown workers, marks workers that stop reporting
or fail, counts the workers in a row that failed before they were ready, and asks each
endpoint's demand books (``demand.py``: load routed, queued and refused) for the frozen
snapshot the policy decides on (``snapshot`` only reads; the steps that change state
have their own names).

A worker's phase changes through ``WorkerRecord.phase`` (which notes when), by reports
(STARTING -> READY, any -> ERRORED on an error) and by the autoscaler (DRAINING, PARKED,
WAKING, which a report never undoes: a draining worker's report keeps it draining). The
fleet also keeps how long each endpoint's workers have been parked.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Final

from vespid.control.demand import EndpointBooks
from vespid.control.models import EndpointConfig
from vespid.control.policy import (
    ScalingSnapshot,
    WorkerPhase,
    WorkerView,
)
from vespid.control.policy_queue import aged_wait_s
from vespid.control.policy_wait import queue_time_s
from vespid.control.providers.base import WorkerHandle
from vespid.protocol.wire import REPORT_INTERVAL_S, WorkerStatusReport

__all__ = ["STALE_AFTER_S", "Fleet", "WorkerRecord"]

# Three missed reports and a worker is out (30 s at the 10 s report interval).
STALE_AFTER_S: Final = 3 * REPORT_INTERVAL_S


# Phases the autoscaler sets, which reports do not change (only an error does).
_HELD_PHASES: Final = frozenset({WorkerPhase.DRAINING, WorkerPhase.PARKED, WorkerPhase.WAKING})


@dataclass
class WorkerRecord:
    """One worker, as the control plane sees it."""

    handle: WorkerHandle
    _phase: WorkerPhase = WorkerPhase.STARTING
    phase_since: float = field(default_factory=time.time)  # unix time it entered its phase
    parked_s: float = 0.0  # seconds parked, over its past spells in PARKED
    waiting_load: float = 0.0  # the part of cur_load not started yet (its report's)
    waiting_age: float = 0.0  # its report's: how long its oldest waiting request had waited
    parked: bool = False  # what its latest report said
    last_report_at: float | None = None
    cur_load: float = 0.0
    max_perf: float | None = None
    error_msg: str = ""
    in_flight: int = 0
    sessions: int = 0
    routed_load: float = 0.0  # routed since its last report (not yet in cur_load)
    routed_requests: int = 0  # requests routed since its last report
    slots: int = 0  # its report's concurrency limit (0: waiting work not told apart)
    free_slots: int = 0  # its report's free slots
    loadtime_s: float | None = None
    served_total: float = 0.0
    # From its start (or its adoption after a restart) to its first ready report.
    ready_after_s: float | None = None
    adopted_at: float | None = None  # unix time this run adopted it (None: it started it)
    request_key: bytes | None = None  # its HMAC key: routes to it are tagged, not RSA-signed

    @property
    def phase(self) -> WorkerPhase:
        return self._phase

    @phase.setter
    def phase(self, phase: WorkerPhase) -> None:
        """Enter ``phase`` (noting when; a spell in PARKED counts to ``parked_s``)."""
        if phase is not self._phase:
            now = time.time()
            if self._phase is WorkerPhase.PARKED:
                self.parked_s += max(0.0, now - self.phase_since)
            self._phase, self.phase_since = phase, now

    def parked_seconds(self, now: float) -> float:
        """Seconds parked so far, the spell it may be in now included."""
        ongoing = now - self.phase_since if self._phase is WorkerPhase.PARKED else 0.0
        return self.parked_s + max(0.0, ongoing)

    @property
    def worker_id(self) -> int:
        return self.handle.worker_id

    @property
    def url(self) -> str:
        return self.handle.url

    def est_wait_s(self) -> float:
        """The router's wait estimate (``queue_time_s`` on its view, which counts the load
        routed since its report); inf if not benchmarked."""
        if not self.max_perf:
            return math.inf
        return queue_time_s(self.view(), self.max_perf)

    def note_routed(self, cost: float) -> None:
        """A request of ``cost`` routed to it, not yet in its report."""
        self.routed_load += cost
        self.routed_requests += 1

    def view(self, now: float | None = None) -> WorkerView:
        """The worker as the policy sees it at ``now`` (``time.monotonic``, the reports'
        clock): its report, the load routed to it since, and its oldest wait aged by the
        time since the report while anything waits."""
        since_s = 0.0
        if self.last_report_at is not None:
            since_s = (time.monotonic() if now is None else now) - self.last_report_at
        return WorkerView(
            worker_id=str(self.worker_id),
            state=self.phase,
            cur_load=self.cur_load + self.routed_load,
            max_perf=self.max_perf,
            sessions=self.sessions,
            in_flight=max(0, self.in_flight - self.sessions),
            started_at=self.waited_from,
            failed_before_ready=self.failed_before_ready,
            waiting_load=self.waiting_load,
            revision=self.handle.revision,
            phase_since=self.phase_since,
            oldest_wait_s=aged_wait_s(self.waiting_age, self.waiting_load, since_s),
            slots=self.slots,
            free_slots=self.free_slots,
            routed_load=self.routed_load,
            routed_requests=self.routed_requests,
        )

    @property
    def waited_from(self) -> float:
        """When this run began to wait for it to be ready (its ready timeout counts from
        then): its start, or its adoption after a restart."""
        return self.handle.started_at if self.adopted_at is None else self.adopted_at

    @property
    def failed_before_ready(self) -> bool:
        """ERRORED without ever having been ready (a model that cannot load)."""
        return self.phase is WorkerPhase.ERRORED and self.ready_after_s is None

    def describe(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "endpoint": self.handle.endpoint,
            "url": self.url,
            "state": self.phase.value,
            "phase_since": self.phase_since,
            "revision": self.handle.revision,
            "cur_load": self.cur_load,
            "waiting_load": self.waiting_load,
            "parked": self.parked,
            "parked_s": round(self.parked_seconds(time.time()), 3),
            "max_perf": self.max_perf,
            "in_flight": self.in_flight,
            "sessions": self.sessions,
            "error_msg": self.error_msg,
            "loadtime_s": self.loadtime_s,
            "ready_after_s": self.ready_after_s,
            "served_total": self.served_total,
            "started_at": self.handle.started_at,
            "adopted_at": self.adopted_at,
        }


class Fleet:
    """Workers by id, and demand by endpoint. Event-loop only."""

    def __init__(self) -> None:
        self.workers: dict[int, WorkerRecord] = {}
        self.books: dict[str, EndpointBooks] = {}
        self.parked_s_gone: dict[str, float] = {}  # endpoint -> parked s of removed workers

    def add(self, handle: WorkerHandle) -> WorkerRecord:
        record = WorkerRecord(handle)
        self.workers[handle.worker_id] = record
        return record

    def remove(self, worker_id: int) -> WorkerRecord | None:
        """Forget a worker being stopped; one that failed before it was ready counts
        toward its endpoint's start backoff."""
        record = self.workers.pop(worker_id, None)
        if record is None:
            return None
        endpoint = record.handle.endpoint
        if record.failed_before_ready:
            self._books(endpoint).start_failures += 1
        parked_s = record.parked_seconds(time.time())
        if parked_s:
            self.parked_s_gone[endpoint] = self.parked_s_gone.get(endpoint, 0.0) + parked_s
        return record

    def parked_seconds(self, endpoint: str, now: float | None = None) -> float:
        """Seconds ``endpoint``'s workers have been parked, those gone included."""
        now = time.time() if now is None else now
        live = sum(w.parked_seconds(now) for w in self.of(endpoint))
        return self.parked_s_gone.get(endpoint, 0.0) + live

    def of(self, endpoint: str) -> list[WorkerRecord]:
        return [w for w in self.workers.values() if w.handle.endpoint == endpoint]

    def _books(self, endpoint: str) -> EndpointBooks:
        return self.books.setdefault(endpoint, EndpointBooks())

    # -- reports -------------------------------------------------------------

    def ingest(self, report: WorkerStatusReport, now: float | None = None) -> WorkerRecord | None:
        """Apply a ``/worker_status/`` report; None if the worker is unknown."""
        record = self.workers.get(report.id)
        if record is None:
            return None
        now = time.monotonic() if now is None else now
        books = self._books(record.handle.endpoint)
        record.last_report_at = now
        record.cur_load = report.cur_load
        record.waiting_load = report.waiting_load
        record.waiting_age = report.waiting_age
        record.parked = report.parked
        record.routed_load, record.routed_requests = 0.0, 0
        record.slots, record.free_slots = report.slots, report.free_slots
        # Sessions are tickets in num_requests_working too; num_sessions tells them apart.
        record.in_flight = report.num_requests_working
        record.sessions = report.num_sessions
        # A worker's own 429s (rej_load) are not demand here: the client re-routes them,
        # so they come back through the router's queue; counting both would overshoot.
        record.served_total += report.cur_perf
        if report.max_perf > 0:
            record.max_perf = books.last_perf = report.max_perf
        if report.loadtime:
            record.loadtime_s = report.loadtime
        record.error_msg = report.error_msg or ""
        if record.error_msg:
            record.phase = WorkerPhase.ERRORED
        elif record.max_perf and record.phase not in _HELD_PHASES:
            # A worker that says it is parked (one adopted after a restart) stays unrouted.
            record.phase = WorkerPhase.PARKED if report.parked else WorkerPhase.READY
            if record.ready_after_s is None:
                record.ready_after_s = max(0.0, time.time() - record.waited_from)
                books.start_failures = 0  # a worker made it: starts need not wait
        if record.cur_load > 0 or report.new_load > 0:
            books.last_activity_at = time.time()
        return record

    def mark_errored(self, worker_id: int, why: str) -> None:
        """A worker the control plane found broken (exited, not ready in time)."""
        record = self.workers.get(worker_id)
        if record is not None and record.phase is not WorkerPhase.ERRORED:
            record.phase, record.error_msg = WorkerPhase.ERRORED, why

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
        books.note(books.arrivals, time.monotonic(), cost)
        books.last_activity_at = time.time()

    def note_rejection(self, endpoint: str, cost: float) -> None:
        books = self._books(endpoint)
        books.note(books.rejections, time.monotonic(), cost)
        books.last_activity_at = time.time()

    def note_waiting(self, endpoint: str, queued_requests: int) -> None:
        """Requests waiting in the router's queue are activity, polled or not."""
        if queued_requests:
            self._books(endpoint).last_activity_at = time.time()

    def snapshot(
        self,
        endpoint: EndpointConfig,
        *,
        queued_load: float,
        queued_requests: int,
        free_gpus: int | None = None,
        launching: int = 0,
        oldest_wait_s: float = 0.0,
    ) -> ScalingSnapshot:
        """What the policy may know about ``endpoint`` now; changes nothing."""
        books = self.books.get(endpoint.name) or EndpointBooks()
        mono = time.monotonic()
        return books.snapshot(
            endpoint.scaling,
            tuple(w.view(mono) for w in self.of(endpoint.name)),
            now=time.time(),
            rate_now=mono,
            queued_load=queued_load,
            queued_requests=queued_requests,
            ready_timeout_s=endpoint.template.ready_timeout,
            gpus_per_worker=endpoint.template.gpus_per_worker,
            free_gpus=free_gpus,
            launching=launching,
            oldest_wait_s=oldest_wait_s,
            revision=endpoint.revision,
        )
