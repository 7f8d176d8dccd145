"""The worker's books: requests in progress, what changed since the last report, and
finished requests waiting to be reported.

Everything here is bounded: a finished request stays only until the next
``/delete_requests/`` report takes it (and at most ``MAX_FINISHED`` of them wait),
so memory does not grow with the number of requests served.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from vespid.protocol.wire import FinishedRequest
from vespid.worker.metrics import WorkerMetrics

__all__ = ["Books", "Outcome", "Ticket"]

MAX_FINISHED: Final = 10_000


class Outcome(enum.Enum):
    """How a request ended."""

    SUCCESS = "success"  # backend answered 2xx (or 3xx) in full
    CLIENT_ERROR = "client_error"  # backend or worker answered 4xx: the caller's mistake
    ERROR = "error"  # backend 5xx, unreachable, or its stream broke
    REJECTED = "rejected"  # 429: the estimated wait was too long
    CANCELLED = "cancelled"  # the client went away (logged as 499)


def outcome_for_status(status: int) -> Outcome:
    if status < 400:
        return Outcome.SUCCESS
    if status == 429:
        return Outcome.REJECTED
    if status < 500:
        return Outcome.CLIENT_ERROR
    return Outcome.ERROR


@dataclass(eq=False, slots=True)
class Ticket:
    """One request's record while it is in the worker."""

    request_idx: int
    workload: float
    is_session: bool = False
    entered_queue_at: float = field(default_factory=time.time)
    work_started_at: float = 0.0
    started_monotonic: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class ReportCounters:
    """What happened since the last ``/worker_status/`` report."""

    new_load: float = 0.0
    rej_load: float = 0.0
    served_load: float = 0.0
    received: int = 0


class Books:
    """Single-threaded bookkeeping; call from the event loop only."""

    def __init__(self, metrics: WorkerMetrics, *, keep_finished: bool = True) -> None:
        self._metrics = metrics
        # Finished requests are kept only for /delete_requests/ reports (REPORT_ADDR).
        self._keep_finished = keep_finished
        self.working: set[Ticket] = set()
        self.counters = ReportCounters()
        self.finished: deque[FinishedRequest] = deque(maxlen=MAX_FINISHED)
        self.changed = False

    def receive(self, request_idx: int, workload: float, *, is_session: bool = False) -> Ticket:
        ticket = Ticket(request_idx, workload, is_session)
        self.working.add(ticket)
        self.counters.new_load += workload
        self.counters.received += 1
        self.changed = True
        return ticket

    def finish(self, ticket: Ticket, status: int, outcome: Outcome | None = None) -> Outcome:
        """Close a ticket once; returns the outcome recorded."""
        outcome = outcome or outcome_for_status(status)
        if ticket not in self.working:
            return outcome
        self.working.discard(ticket)
        self.changed = True
        c = self.counters
        m = self._metrics
        if outcome is Outcome.SUCCESS:
            c.served_load += ticket.workload
            m.workload_served.inc(ticket.workload)
        elif outcome is Outcome.REJECTED:
            c.rej_load += ticket.workload
            c.new_load -= ticket.workload
            m.workload_rejected.inc(ticket.workload)
        elif outcome is Outcome.CANCELLED:
            c.new_load -= ticket.workload
        m.count_request(status, outcome.value)
        m.latency.observe(time.monotonic() - ticket.started_monotonic)
        if self._keep_finished:
            now = time.time()
            self.finished.append(
                {
                    "request_idx": ticket.request_idx,
                    "success": outcome is Outcome.SUCCESS,
                    "status": status,
                    "entered_queue_at": ticket.entered_queue_at,
                    "work_started_at": ticket.work_started_at or now,
                    "work_completed_at": now,
                }
            )
        return outcome

    @property
    def cur_load(self) -> float:
        """Workload of every request in the worker now, sessions included."""
        return sum(t.workload for t in self.working)

    @property
    def waiting_load(self) -> float:
        """The part of ``cur_load`` still waiting for a backend slot (sessions never wait:
        their reservation runs from the start)."""
        return sum(t.workload for t in self._waiting())

    def waiting_age(self, now: float) -> float:
        """Seconds the oldest request waiting for a backend slot has waited since the worker
        received it (``now`` on the ``time.time`` clock); 0 when none waits."""
        received = [t.entered_queue_at for t in self._waiting()]
        return max(0.0, now - min(received)) if received else 0.0

    def _waiting(self) -> Iterator[Ticket]:
        """Tickets admitted and not started yet (sessions never wait)."""
        return (t for t in self.working if not t.work_started_at and not t.is_session)

    def take_counters(self) -> ReportCounters:
        taken, self.counters = self.counters, ReportCounters()
        return taken

    def restore_counters(self, taken: ReportCounters) -> None:
        """Put back counters whose report failed, so no load goes unreported."""
        c = self.counters
        c.new_load += taken.new_load
        c.rej_load += taken.rej_load
        c.served_load += taken.served_load
        c.received += taken.received
        self.changed = True

    def take_finished(self) -> list[FinishedRequest]:
        taken = list(self.finished)
        self.finished.clear()
        return taken

    def restore_finished(self, taken: list[FinishedRequest]) -> None:
        """Put back finished requests whose report failed (oldest first; the bound holds)."""
        self.finished.extendleft(reversed(taken))
