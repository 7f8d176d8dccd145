"""The simulated fleet: workers serving streams behind their own queues, and the router's
queue in front of them.

Workers are STARTING until ``cold_start_s`` has passed, then READY. A parked worker
(PARKED: loaded, asleep, takes no work) is woken in ``wake_s`` (WAKING, then READY). A
DRAINING worker serves out what it holds, queued or running, and takes no new requests.

The router routes as the control plane's does (``vespid.control.router``), with the same
rule, ``accepts_work`` on the wait estimate ``queue_time_s``: the request at the head of
its queue (first in, first out) goes to the READY worker with the shortest estimated wait
(Little's law on its last report and the load routed to it since: the work not started
ahead of it over ``max_perf``, see ``vespid.control.policy_wait``), as long as that wait is
within ``max_queue_time`` (ties: the oldest worker, the lowest id). A worker
whose slots are all taken still gets requests: they wait in the worker's own queue, first
in, first out, for a slot (the worker's ``waiting_load``). Only when no worker accepts
does a request wait in the router's queue. A request's queue wait is the time from its
arrival to the start of its service (router queue plus worker queue).

Each worker reports as the real one does (``vespid.worker.books``): ``cur_load`` is the
full cost of every request it holds, queued or running, until it ends; ``waiting_load`` the
part not started; ``slots`` its streams and ``free_slots`` those free; ``waiting_age``
how long the oldest waiting request has waited since it was routed there (aged by the
time since the report, as ``Fleet`` ages it); a report is refreshed when it is
``report_s`` old and someone looks.
Streams progress at the rates ``WorkerModel`` gives; between two events every rate is
constant, so ``advance`` moves them exactly. Every second of a worker is billed: as
parked while PARKED, as active in every other phase.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final

from vespid.control.policy import ScalingConfig, WorkerPhase, WorkerView
from vespid.control.policy_queue import aged_wait_s
from vespid.control.policy_stages import accepts_work, queue_time_s
from vespid.simulate.load import Arrival
from vespid.simulate.model import WorkerModel

__all__ = ["EPSILON", "MAX_QUEUE_TIME_S", "Report", "SimFleet", "SimWorker", "Stream"]

EPSILON: Final = 1e-9  # tokens or seconds below this are done (float noise)
MAX_QUEUE_TIME_S: Final = ScalingConfig().max_queue_time  # the router's default limit
_SERVING: Final = frozenset({WorkerPhase.READY, WorkerPhase.DRAINING})


@dataclass(slots=True)
class Stream:
    """One request on a worker: seconds of prefill left, then tokens of decode left."""

    arrival: Arrival
    prefill_left_s: float
    decode_left: float


@dataclass(frozen=True, slots=True)
class Report:
    """A worker's load report: when, its cur_load, waiting_load, waiting_age and requests,
    and how much had been routed to it by then (what the fleet adds since is the difference)."""

    at_s: float
    cur_load: float
    waiting_load: float
    waiting_age: float  # how long its oldest waiting request had waited there
    in_flight: int
    routed: float
    routed_requests: int
    free_slots: int  # slots free at the report


@dataclass(slots=True)
class SimWorker:
    number: int
    started_at: float
    ready_at: float  # when a STARTING or WAKING worker becomes READY
    phase: WorkerPhase = WorkerPhase.STARTING
    phase_since: float = 0.0
    streams: list[Stream] = field(default_factory=list)
    waiting: deque[Arrival] = field(default_factory=deque)  # routed, waiting for a slot
    routed_at: deque[float] = field(default_factory=deque)  # when each of ``waiting`` came
    routed: float = 0.0  # workload ever routed to it (the fleet's routed_load is a difference)
    routed_requests: int = 0  # requests ever routed to it
    report: Report | None = None

    @property
    def worker_id(self) -> str:
        return f"w{self.number}"

    @property
    def requests(self) -> int:
        """Requests it holds, running or waiting for a slot."""
        return len(self.streams) + len(self.waiting)

    def waiting_load(self) -> float:
        """Output tokens of the requests waiting for a slot: its waiting_load."""
        return float(sum(a.output_tokens for a in self.waiting))

    def waiting_age(self, now: float) -> float:
        """How long its oldest waiting request has waited since it was routed here (the
        real worker counts from when it received the request): its waiting_age."""
        return now - self.routed_at[0] if self.routed_at else 0.0

    def load(self) -> float:
        """The full cost of every request it holds, until each ends: its cur_load."""
        return self.waiting_load() + sum(s.arrival.output_tokens for s in self.streams)

    def next_event(self, now: float, model: WorkerModel) -> float:
        """When it next becomes ready, or one of its streams ends a phase."""
        if self.phase in (WorkerPhase.STARTING, WorkerPhase.WAKING):
            return self.ready_at
        rate = model.decode_rate(len(self.streams))
        ends = [
            now + (s.prefill_left_s if s.prefill_left_s > EPSILON else s.decode_left / rate)
            for s in self.streams
        ]
        return min(ends, default=float("inf"))

    def advance(self, dt: float, model: WorkerModel) -> None:
        """``dt`` seconds of work; no stream changes phase inside it (events bound it)."""
        rate = model.decode_rate(len(self.streams))
        for s in self.streams:
            if s.prefill_left_s > EPSILON:
                s.prefill_left_s -= dt
            else:
                s.decode_left -= rate * dt

    def enter(self, phase: WorkerPhase, now: float) -> None:
        self.phase, self.phase_since = phase, now


@dataclass(slots=True)
class SimFleet:
    """The workers, the router's queue, and what was served and billed."""

    model: WorkerModel
    max_queue_time: float = MAX_QUEUE_TIME_S  # the endpoint's: the router's limit
    workers: dict[str, SimWorker] = field(default_factory=dict)
    queue: deque[Arrival] = field(default_factory=deque)  # the router's
    waits_s: list[float] = field(default_factory=list)
    served: int = 0
    cold_starts: int = 0
    wakes: int = 0
    worker_seconds: float = 0.0  # active: every phase but PARKED
    parked_seconds: float = 0.0
    _numbers: int = 0

    def start(self, now: float, *, ready: bool = False) -> SimWorker:
        """A new worker: STARTING for ``cold_start_s`` (a cold start), or READY at once."""
        self._numbers += 1
        delay = 0.0 if ready else self.model.cold_start_s
        worker = SimWorker(self._numbers, now, now + delay, phase_since=now)
        if ready:
            worker.phase = WorkerPhase.READY
        else:
            self.cold_starts += 1
        self.workers[worker.worker_id] = worker
        return worker

    def _idle(self, worker_id: str, move: str) -> SimWorker:
        """The worker, which must hold no request (a busy one moved is a policy's bug)."""
        worker = self.workers[worker_id]
        if worker.requests:
            raise AssertionError(f"{worker_id} {move} while {worker.phase.value}, "
                                 f"{worker.requests} requests")  # fmt: skip
        return worker

    def stop(self, worker_id: str) -> None:
        """Stop an idle worker."""
        self._idle(worker_id, "stopped")
        del self.workers[worker_id]

    def drain(self, worker_id: str, now: float) -> None:
        """A READY worker takes no new requests; it serves out the ones it holds."""
        worker = self.workers[worker_id]
        if worker.phase is WorkerPhase.READY:
            worker.enter(WorkerPhase.DRAINING, now)

    def park(self, worker_id: str, now: float) -> None:
        """An idle READY or DRAINING worker goes to sleep."""
        worker = self._idle(worker_id, "parked")
        if worker.phase not in _SERVING:
            raise AssertionError(f"{worker_id} parked while {worker.phase.value}")
        worker.enter(WorkerPhase.PARKED, now)

    def wake(self, worker_id: str, now: float) -> None:
        """A PARKED worker is WAKING for ``wake_s``; a DRAINING one is READY at once."""
        worker = self.workers[worker_id]
        if worker.phase is WorkerPhase.DRAINING:
            worker.enter(WorkerPhase.READY, now)
        elif worker.phase is WorkerPhase.PARKED:
            worker.enter(WorkerPhase.WAKING, now)
            worker.ready_at = now + self.model.wake_s
            self.wakes += 1

    def next_event(self, now: float) -> float:
        return min((w.next_event(now, self.model) for w in self.workers.values()),
                   default=float("inf"))  # fmt: skip

    def advance(self, now: float, to: float) -> None:
        """Move every stream to ``to``, bill the time; finish streams done, ready workers due."""
        for worker in self.workers.values():
            if worker.phase is WorkerPhase.PARKED:
                self.parked_seconds += to - now
                continue
            self.worker_seconds += to - now
            if worker.phase in _SERVING:
                worker.advance(to - now, self.model)
                done = [s for s in worker.streams if s.decode_left <= EPSILON]
                self.served += len(done)
                worker.streams = [s for s in worker.streams if s.decode_left > EPSILON]
            elif worker.ready_at <= to + EPSILON:
                worker.enter(WorkerPhase.READY, to)

    def view(self, worker: SimWorker, now: float) -> WorkerView:
        """The worker as the control plane sees it: its last report (refreshed when
        ``report_s`` old) plus the load and requests routed to it since, as ``Fleet`` adds
        them; ``max_perf`` once it has been ready (its benchmark)."""
        last = worker.report
        if last is None or now - last.at_s >= self.model.report_s - EPSILON:
            last = Report(now, worker.load(), worker.waiting_load(), worker.waiting_age(now),
                          worker.requests, worker.routed, worker.routed_requests,
                          max(0, self.model.streams - len(worker.streams)))  # fmt: skip
            worker.report = last
        return WorkerView(
            worker_id=worker.worker_id,
            state=worker.phase,
            cur_load=last.cur_load + worker.routed - last.routed,
            max_perf=self.model.perf if worker.phase is not WorkerPhase.STARTING else None,
            in_flight=last.in_flight + worker.routed_requests - last.routed_requests,
            started_at=worker.started_at,
            waiting_load=last.waiting_load,
            phase_since=worker.phase_since,
            oldest_wait_s=aged_wait_s(last.waiting_age, last.waiting_load, now - last.at_s),
            slots=self.model.streams,
            free_slots=last.free_slots,
            routed_load=worker.routed - last.routed,
            routed_requests=worker.routed_requests - last.routed_requests,
        )

    def _route_to(self, now: float) -> SimWorker | None:
        """The router's pick: ``accepts_work`` on ``queue_time_s``, the shortest wait
        first, ties to the lowest id; None when no worker accepts."""
        best: tuple[float, int] | None = None
        chosen = None
        for worker in self.workers.values():
            if worker.phase is not WorkerPhase.READY:
                continue
            wait_s = queue_time_s(self.view(worker, now), self.model.perf)
            if accepts_work(worker.phase, wait_s, self.max_queue_time) and (
                best is None or (wait_s, worker.number) < best
            ):
                best, chosen = (wait_s, worker.number), worker
        return chosen

    def _start_waiting(self, worker: SimWorker, now: float) -> None:
        """Give the worker's free slots to its queue, first in first out."""
        while worker.waiting and len(worker.streams) < self.model.streams:
            arrival = worker.waiting.popleft()
            worker.routed_at.popleft()
            self.waits_s.append(now - arrival.at_s)
            prefill = self.model.prefill_s(arrival.prompt_tokens)
            worker.streams.append(Stream(arrival, prefill, float(arrival.output_tokens)))

    def dispatch(self, now: float) -> None:
        """Start what waits at the workers where a slot is free, then route the router's
        queue, oldest first, while some worker accepts."""
        for worker in self.workers.values():
            if worker.phase in _SERVING:
                self._start_waiting(worker, now)
        while self.queue:
            chosen = self._route_to(now)
            if chosen is None:
                return
            arrival = self.queue.popleft()
            chosen.waiting.append(arrival)
            chosen.routed_at.append(now)
            chosen.routed += arrival.output_tokens
            chosen.routed_requests += 1
            self._start_waiting(chosen, now)

    def waiting(self) -> int:
        """Requests not started yet: in the router's queue and in the workers'."""
        return len(self.queue) + sum(len(w.waiting) for w in self.workers.values())

    def ongoing(self) -> int:
        """Requests arrived and not finished: queued anywhere or running."""
        return len(self.queue) + sum(w.requests for w in self.workers.values())

    def counts(self) -> dict[str, int]:
        """Workers by state: starting, waking, idle, busy, draining, parked."""
        counts = dict.fromkeys(("starting", "waking", "idle", "busy", "draining", "parked"), 0)
        for w in self.workers.values():
            if w.phase is WorkerPhase.READY:
                counts["busy" if w.requests else "idle"] += 1
            else:
                counts[w.phase.value] += 1
        return counts
