"""The simulated fleet: workers serving streams, and the router's queue in front of them.

Workers are STARTING until ``cold_start_s`` has passed, then READY. A parked worker
(PARKED: loaded, asleep, takes no work) is woken in ``wake_s`` (WAKING, then READY). A
DRAINING worker serves out its streams and takes no new ones. The router sends the
request at the head of its queue (first in, first out) to the READY worker with the fewest
streams that has a free slot (ties: the oldest worker), so no request waits on a worker:
every wait is in the router's queue, and a request's queue wait is the time from its
arrival to its routing. Streams progress at the rates ``WorkerModel`` gives; between two
events every rate is constant, so ``advance`` moves them exactly. Every second of a worker
is billed: as parked while PARKED, as active in every other phase.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final

from vespid.control.policy import WorkerPhase
from vespid.simulate.load import Arrival
from vespid.simulate.model import WorkerModel

__all__ = ["EPSILON", "SimFleet", "SimWorker", "Stream"]

EPSILON: Final = 1e-9  # tokens or seconds below this are done (float noise)
_SERVING: Final = frozenset({WorkerPhase.READY, WorkerPhase.DRAINING})


@dataclass(slots=True)
class Stream:
    """One request on a worker: seconds of prefill left, then tokens of decode left."""

    arrival: Arrival
    prefill_left_s: float
    decode_left: float


@dataclass(slots=True)
class SimWorker:
    number: int
    started_at: float
    ready_at: float  # when a STARTING or WAKING worker becomes READY
    phase: WorkerPhase = WorkerPhase.STARTING
    phase_since: float = 0.0
    streams: list[Stream] = field(default_factory=list)
    routed: float = 0.0  # workload ever routed to it (the fleet's routed_load is a difference)
    routed_requests: int = 0  # requests ever routed to it

    @property
    def worker_id(self) -> str:
        return f"w{self.number}"

    def load(self) -> float:
        """Output tokens still to generate: the worker's cur_load."""
        return sum(s.decode_left for s in self.streams)

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
    workers: dict[str, SimWorker] = field(default_factory=dict)
    queue: deque[Arrival] = field(default_factory=deque)
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

    def stop(self, worker_id: str) -> None:
        """Stop an idle worker; a busy one is a policy's bug."""
        worker = self.workers.pop(worker_id)
        if worker.streams:
            raise AssertionError(f"{worker_id} stopped with {len(worker.streams)} streams")

    def drain(self, worker_id: str, now: float) -> None:
        """A READY worker takes no new streams; it serves out the ones it has."""
        worker = self.workers[worker_id]
        if worker.phase is WorkerPhase.READY:
            worker.enter(WorkerPhase.DRAINING, now)

    def park(self, worker_id: str, now: float) -> None:
        """An idle READY or DRAINING worker goes to sleep; a busy one is a policy's bug."""
        worker = self.workers[worker_id]
        if worker.streams or worker.phase not in _SERVING:
            raise AssertionError(f"{worker_id} parked while {worker.phase.value}, "
                                 f"{len(worker.streams)} streams")  # fmt: skip
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

    def dispatch(self, now: float) -> None:
        """Route queued requests, oldest first, to the least busy READY worker with room."""
        limit = self.model.streams
        while self.queue:
            free = [
                w for w in self.workers.values()
                if w.phase is WorkerPhase.READY and len(w.streams) < limit
            ]  # fmt: skip
            if not free:
                return
            worker = min(free, key=lambda w: (len(w.streams), w.number))
            arrival = self.queue.popleft()
            self.waits_s.append(now - arrival.at_s)
            prefill = self.model.prefill_s(arrival.prompt_tokens)
            worker.streams.append(Stream(arrival, prefill, float(arrival.output_tokens)))
            worker.routed += arrival.output_tokens
            worker.routed_requests += 1

    def counts(self) -> dict[str, int]:
        """Workers by state: starting, waking, idle, busy, draining, parked."""
        counts = dict.fromkeys(("starting", "waking", "idle", "busy", "draining", "parked"), 0)
        for w in self.workers.values():
            if w.phase is WorkerPhase.READY:
                counts["busy" if w.streams else "idle"] += 1
            else:
                counts[w.phase.value] += 1
        return counts
