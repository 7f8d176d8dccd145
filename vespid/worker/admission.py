"""Admission control: estimate the wait, shed load with 429, and queue for a backend slot.

Estimated wait, without a concurrency limit: workload already in the worker (queued or
running, sessions excluded) / measured throughput. Worked example: 3 requests of cost 100
ahead, max_perf 50 workload/s -> 300 / 50 = 6 s; with MAX_WAIT_TIME 5 s the new request
gets 429 at once, with 10 s it is admitted. With a concurrency limit, Little's law as the
router estimates it (``vespid.protocol.wait.slot_wait_s``): 0 while a slot is free, else
(workload waiting for a slot + one running request's share) / throughput; 8 slots full of
requests of 200 at 237/s -> 0.84 s, not 6.75 s.

With ALLOW_PARALLEL=false the backend gets one request at a time, in arrival
order; with a concurrency limit, at most that many; otherwise every admitted
request goes straight through. A waiter that is cancelled (its client went away)
leaves the line and frees its place.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from vespid.errors import Overloaded
from vespid.protocol.wait import slot_wait_s
from vespid.worker.books import Ticket
from vespid.worker.metrics import WorkerMetrics

__all__ = ["Admission"]


def _counted(ticket: Ticket) -> float:
    """The part of a ticket's workload that counts towards the wait estimate."""
    return 0.0 if ticket.is_session else ticket.workload


class Admission:
    """FIFO slots plus the wait estimate. Call from the event loop only."""

    def __init__(self, *, limit: int | None, max_wait_s: float, metrics: WorkerMetrics) -> None:
        self.limit = limit
        self.max_wait_s = max_wait_s
        self.max_perf: float | None = None
        self._metrics = metrics
        self._running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.workload_ahead = 0.0  # queued + running, sessions excluded
        self.workload_waiting = 0.0  # the part of workload_ahead waiting for a slot
        self._idle = asyncio.Event()  # set while nothing runs or waits
        self._idle.set()
        metrics.in_flight.set_function(lambda: self._running)  # read when scraped

    @property
    def queue_depth(self) -> int:
        return len(self._waiters)

    @property
    def running(self) -> int:
        return self._running

    @property
    def free_slots(self) -> int:
        """Slots free now under the concurrency limit (0 without one)."""
        return max(0, self.limit - self._running) if self.limit is not None else 0

    async def drained(self) -> None:
        """Return once no admitted request runs or waits for a slot."""
        await self._idle.wait()

    def _note_idle(self) -> None:
        if not self._running and not self._waiters:
            self._idle.set()

    def estimate_wait_s(self) -> float:
        if not self.max_perf:
            return 0.0
        if self.limit is None:
            return self.workload_ahead / self.max_perf
        free = 0 if self._waiters else self.free_slots
        running = self.workload_ahead - self.workload_waiting
        return slot_wait_s(self.workload_waiting, running, self.limit, free, self.max_perf)

    async def enter(self, ticket: Ticket) -> None:
        """Wait for a slot; raise Overloaded when the estimated wait is too long.

        A request riding a session is never shed (its session reserved the capacity)
        and its workload stays out of the wait estimate, but it still takes a slot.
        """
        wait_s = self.estimate_wait_s()
        if wait_s > self.max_wait_s and not ticket.is_session:
            raise Overloaded(
                f"estimated wait {wait_s:.2f} s exceeds MAX_WAIT_TIME {self.max_wait_s:g} s; "
                "retry on another worker",
                estimated_wait_s=round(wait_s, 3),
                max_wait_s=self.max_wait_s,
            )
        self.workload_ahead += _counted(ticket)
        self._idle.clear()
        if self.limit is not None and (self._running >= self.limit or self._waiters):
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            self._metrics.queue_depth.set(len(self._waiters))
            self.workload_waiting += _counted(ticket)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._running -= 1  # the slot was handed over as we were cancelled
                    self._wake_next()
                elif waiter in self._waiters:  # _wake_next may have dropped it already
                    self._waiters.remove(waiter)
                self.workload_ahead -= _counted(ticket)
                self._metrics.queue_depth.set(len(self._waiters))
                self._note_idle()
                raise
            finally:
                self.workload_waiting = max(0.0, self.workload_waiting - _counted(ticket))
            self._metrics.queue_depth.set(len(self._waiters))
        else:
            self._running += 1
        ticket.work_started_at = time.time()

    def leave(self, ticket: Ticket) -> None:
        """Release the slot taken by ``enter``."""
        self.workload_ahead -= _counted(ticket)
        if self.workload_ahead < 1e-9:
            self.workload_ahead = 0.0
        self._running -= 1
        self._wake_next()
        self._note_idle()

    def _wake_next(self) -> None:
        while self._waiters and (self.limit is None or self._running < self.limit):
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._running += 1
                waiter.set_result(None)
