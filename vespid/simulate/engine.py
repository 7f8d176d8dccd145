"""The simulation's clock: arrivals, worker events and policy ticks, in time order.

``simulate(arrivals, model, policy, tick_s, max_queue_time=...)`` runs one policy on one
load, its requests routed with the router's ``max_queue_time``, and returns its
``Result``. Time jumps from event to event (an arrival, a worker becoming ready, a stream
ending its prefill or its output, a tick every ``tick_s``, at exact multiples so that no
drift creeps in); at one instant, streams finish first, then arrivals join the router's
queue, then what waits is started and routed (``SimFleet.dispatch``), then the policy
ticks and its moves apply (stops, drains, parks, wakes, then starts).
Nothing reads a clock or draws a random number: the same input gives the same result.
The run ends once every request is served, or ``GIVE_UP_S`` after the last arrival
(what is still queued or in progress then is counted as unserved).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from vespid.control.policy_types import WorkerPhase
from vespid.simulate.load import Arrival
from vespid.simulate.model import WorkerModel
from vespid.simulate.policies import Action, Policy
from vespid.simulate.workers import EPSILON, MAX_QUEUE_TIME_S, SimFleet

__all__ = ["GIVE_UP_S", "Result", "Sample", "apply", "percentile", "simulate"]

GIVE_UP_S: Final = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Sample:
    """The fleet at one tick: requests arrived since the last, queued (not started: at the
    router or at a worker), workers by state."""

    t_s: float
    arrived: int
    queued: int
    starting: int
    idle: int
    busy: int
    waking: int = 0
    draining: int = 0
    parked: int = 0


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value with at least ``q`` of them at or below it."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass(slots=True)
class Result:
    policy: str
    requests: int
    served: int
    unserved: int
    waits_s: list[float]
    worker_seconds: float  # active: every phase but PARKED
    cold_starts: int
    max_workers: int
    end_s: float
    timeline: list[Sample] = field(default_factory=list)
    parked_seconds: float = 0.0
    wakes: int = 0

    def summary(self) -> dict[str, float | int | str]:
        return {
            "policy": self.policy,
            "requests": self.requests,
            "served": self.served,
            "unserved": self.unserved,
            "worker_seconds": round(self.worker_seconds, 1),
            "parked_seconds": round(self.parked_seconds, 1),
            "total_seconds": round(self.worker_seconds + self.parked_seconds, 1),
            "p50_wait_s": round(percentile(self.waits_s, 0.5), 3),
            "p99_wait_s": round(percentile(self.waits_s, 0.99), 3),
            "max_wait_s": round(max(self.waits_s, default=0.0), 3),
            "cold_starts": self.cold_starts,
            "wakes": self.wakes,
            "max_workers": self.max_workers,
            "end_s": round(self.end_s, 3),
        }


def simulate(
    arrivals: Sequence[Arrival],
    model: WorkerModel,
    policy: Policy,
    tick_s: float,
    *,
    max_queue_time: float = MAX_QUEUE_TIME_S,
) -> Result:
    """Run ``policy`` on ``arrivals`` (in time order) with workers of ``model``, routed
    with the endpoint's ``max_queue_time`` (use the policy's own, where it has one)."""
    fleet = SimFleet(model, max_queue_time)
    for _ in range(policy.initial_ready):
        fleet.start(0.0, ready=True)
    for _ in range(policy.initial_parked):
        fleet.start(0.0, ready=True).enter(WorkerPhase.PARKED, 0.0)
    timeline: list[Sample] = []
    now, i, tick, arrived, most = 0.0, 0, 1, 0, len(fleet.workers)
    give_up = (arrivals[-1].at_s if arrivals else 0.0) + GIVE_UP_S
    while True:
        next_arrival = arrivals[i].at_s if i < len(arrivals) else math.inf
        to = min(next_arrival, fleet.next_event(now), tick * tick_s)
        fleet.advance(now, to)
        now = to
        while i < len(arrivals) and arrivals[i].at_s <= now + EPSILON:
            fleet.queue.append(arrivals[i])
            policy.arrived(arrivals[i])
            i, arrived = i + 1, arrived + 1
        fleet.dispatch(now)
        if now >= tick * tick_s - EPSILON:
            tick += 1
            apply(policy.tick(now, fleet), fleet, now)
            most = max(most, len(fleet.workers))
            fleet.dispatch(now)
            counts = fleet.counts()
            timeline.append(Sample(now, arrived, fleet.waiting(), **counts))
            arrived = 0
        if (i == len(arrivals) and not fleet.ongoing()) or now > give_up:
            break
    unserved = fleet.ongoing()
    return Result(
        policy.name, len(arrivals), fleet.served, unserved, fleet.waits_s,
        fleet.worker_seconds, fleet.cold_starts, most, now, timeline,
        fleet.parked_seconds, fleet.wakes,
    )  # fmt: skip


def apply(action: Action, fleet: SimFleet, now: float) -> None:
    """Carry out a policy's action, as the autoscaler loop would."""
    for worker_id in action.stop:
        fleet.stop(worker_id)
    for worker_id in action.drain:
        fleet.drain(worker_id, now)
    for worker_id in action.park:
        fleet.park(worker_id, now)
    for worker_id in action.wake:
        fleet.wake(worker_id, now)
    for _ in range(action.start):
        fleet.start(now)
