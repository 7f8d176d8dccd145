"""The scaling policies a simulation compares, each called every tick with the fleet.

* ``VespidPolicy``: the control plane's own ``decide()``, fed a ``ScalingSnapshot`` built
  by the control plane's own ``EndpointBooks.snapshot`` (``vespid.control.demand``): the
  arrival rates from the same ``EndpointBooks`` windows (workload routed in the last 30 s
  and 5 s), each worker's view as the fleet builds it (``SimFleet.view``: its last
  report, at most ``report_s`` old, plus the load routed to it since, as ``Fleet`` adds
  it; its waiting load; its phase and ``max_perf`` once READY), the router's queue and
  the age of its oldest request, the last activity and the endpoint's ``ready_timeout``.
  Its drains, parks, wakes, stops and starts apply on the tick. Workload is output tokens.
* ``FixedPool``: N workers, READY from the start, never changed.
* ``KnativeKPA``: Knative's pod autoscaler (knative.dev/docs/serving/autoscaling): the
  concurrency (requests in flight or queued) averaged over a stable window (60 s) and a
  panic window (6 s); desired = ceil(average / (container concurrency × target
  utilization 0.7)); panic mode starts when the panic window's desire is at least twice
  the ready pods and lasts a stable window, during which it never scales down; outside
  panic it follows the stable window, scaling down at most to half the pods a tick, to
  zero once the stable window saw nothing.

The Vast-like and Ray Serve baselines are in ``baselines.py``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Final, Protocol

from vespid.control.demand import EndpointBooks
from vespid.control.policy import (
    PolicyState,
    ScalingConfig,
    ScalingSnapshot,
    WorkerPhase,
    decide,
)
from vespid.control.policy_stages import cold_target
from vespid.control.policy_types import Decision
from vespid.simulate.load import Arrival
from vespid.simulate.workers import SimFleet

__all__ = [
    "READY_TIMEOUT_S",
    "Action",
    "FixedPool",
    "KnativeKPA",
    "Policy",
    "VespidPolicy",
    "idle_newest_first",
]

READY_TIMEOUT_S: Final = 600.0  # the endpoint template's default ready_timeout


@dataclass(frozen=True, slots=True)
class Action:
    """Workers to start now, and the ids to stop, drain, park and wake."""

    start: int = 0
    stop: tuple[str, ...] = ()
    drain: tuple[str, ...] = ()
    park: tuple[str, ...] = ()
    wake: tuple[str, ...] = ()


class Policy(Protocol):
    name: str
    initial_ready: int  # workers READY at time 0
    initial_parked: int  # workers PARKED at time 0 (the endpoint's cold pool, already filled)

    def arrived(self, arrival: Arrival) -> None: ...

    def tick(self, now: float, fleet: SimFleet) -> Action: ...


def idle_newest_first(fleet: SimFleet, count: int) -> tuple[str, ...]:
    """Up to ``count`` workers holding no request: STARTING ones first, then newest first."""
    idle = [
        w for w in fleet.workers.values() if not w.requests and w.phase is not WorkerPhase.DRAINING
    ]
    idle.sort(key=lambda w: (w.phase is not WorkerPhase.STARTING, -w.number))
    return tuple(w.worker_id for w in idle[: max(0, count)])


@dataclass(slots=True)
class FixedPool:
    initial_ready: int
    name: str = ""
    initial_parked: int = 0

    def __post_init__(self) -> None:
        self.name = self.name or f"fixed {self.initial_ready}"

    def arrived(self, arrival: Arrival) -> None:
        return None

    def tick(self, now: float, fleet: SimFleet) -> Action:
        return Action()


@dataclass(slots=True)
class VespidPolicy:
    """``decide()`` as the control plane runs it, on the fleet's views of its workers."""

    params: ScalingConfig
    name: str = "vespid"
    initial_ready: int = 0
    initial_parked: int = -1  # below 0: the cold pool of an idle endpoint, cold_target(0)
    books: EndpointBooks = field(default_factory=EndpointBooks)
    state: PolicyState = field(default_factory=PolicyState)
    decisions: list[Decision] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.initial_parked < 0:
            self.initial_parked = cold_target(0, self.params)

    def arrived(self, arrival: Arrival) -> None:
        """The router's ``note_arrival``: the request's cost, and activity."""
        self.books.note(self.books.arrivals, arrival.at_s, float(arrival.output_tokens))
        self.books.last_activity_at = arrival.at_s

    def snapshot(self, now: float, fleet: SimFleet) -> ScalingSnapshot:
        """What ``Fleet.snapshot`` would hand the policy, on simulated time (both build it
        with ``EndpointBooks.snapshot``)."""
        if fleet.ongoing():
            self.books.last_activity_at = now  # reports with load, requests waiting
        if any(w.phase is WorkerPhase.READY for w in fleet.workers.values()):
            self.books.last_perf = fleet.model.perf
        return self.books.snapshot(
            self.params,
            tuple(fleet.view(w, now) for w in fleet.workers.values()),
            now=now,
            rate_now=now,
            queued_load=float(sum(a.output_tokens for a in fleet.queue)),
            queued_requests=len(fleet.queue),
            ready_timeout_s=READY_TIMEOUT_S,
            oldest_wait_s=now - fleet.queue[0].at_s if fleet.queue else 0.0,
        )

    def tick(self, now: float, fleet: SimFleet) -> Action:
        decision, self.state = decide(self.snapshot(now, fleet), self.state)
        self.decisions.append(decision)
        return Action(decision.start, decision.stop, decision.drain, decision.park, decision.wake)


@dataclass(slots=True)
class KnativeKPA:
    """Knative's KPA with its defaults; ``target`` is the container concurrency."""

    target: int
    max_workers: int
    tick_s: float
    name: str = "knative kpa"
    initial_ready: int = 0
    initial_parked: int = 0
    utilization: float = 0.7
    stable_s: float = 60.0
    panic_s: float = 6.0
    panic_threshold: float = 2.0
    max_scale_down_rate: float = 2.0
    samples: deque[tuple[float, int]] = field(default_factory=deque)
    panic_until: float = -math.inf

    def arrived(self, arrival: Arrival) -> None:
        return None

    def _average(self, now: float, window_s: float) -> float:
        values = [c for t, c in self.samples if t > now - window_s]
        return sum(values) / len(values) if values else 0.0

    def tick(self, now: float, fleet: SimFleet) -> Action:
        concurrency = fleet.ongoing()
        self.samples.append((now, concurrency))
        while self.samples and self.samples[0][0] <= now - self.stable_s:
            self.samples.popleft()
        per_pod = self.target * self.utilization
        stable = math.ceil(self._average(now, self.stable_s) / per_pod)
        panic = math.ceil(self._average(now, self.panic_s) / per_pod)
        current = len(fleet.workers)
        ready = sum(1 for w in fleet.workers.values() if w.phase is WorkerPhase.READY)
        if panic >= self.panic_threshold * max(ready, 1) and panic > current:
            self.panic_until = now + self.stable_s
        if now < self.panic_until:
            desired = max(panic, stable, current)
        else:
            desired = max(stable, math.floor(current / self.max_scale_down_rate))
            desired = 0 if stable == 0 and not concurrency else desired
        desired = min(desired, self.max_workers)
        if desired > current:
            return Action(start=desired - current)
        return Action(stop=idle_newest_first(fleet, current - desired))
