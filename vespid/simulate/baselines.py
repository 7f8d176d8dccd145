"""Two more baselines, written from their published formulas.

* ``VastLike``: vespid's formula before issue 15 (every load on a worker is backlog,
  ``demand = max(arrival, backlog / max(target_queue_time, 1 s)) + rejected``; a
  scale-down waits ``scale_down_delay`` once, then goes to the most wanted meanwhile;
  busy workers are kept) with Vast's defaults (target_util 0.9, cold_mult 2.5,
  cold_workers 5, docs.vast.ai "Endpoint Parameters"). Its cold pool is
  ``max(cold_workers, ceil(active × cold_mult))`` parked workers: a scale-up wakes them,
  and each wake raises the pool's target, so new workers are started (a billed load) to
  refill it; the pool's target, like the active one, goes down only once lower for
  ``scale_down_delay``. It runs on the same fleet views as ``VespidPolicy``.
* ``RayServe``: Ray Serve's queue-length policy (docs.ray.io, "Advanced Ray Serve
  Autoscaling"; ``AutoscalingConfig`` defaults): the ongoing requests (queued and in
  flight) averaged over ``look_back_period_s`` (30 s); ``desired = ceil(current × (1 +
  (ongoing / (target_ongoing_requests × current) − 1) × smoothing_factor))`` with
  smoothing 1.0; a change applies once it has been wanted for ``upscale_delay_s`` (30 s)
  or ``downscale_delay_s`` (600 s) in a row; from zero replicas one starts at once.
  ``target_ongoing_requests`` is the worker's streams (Ray's default of 2 is for a replica
  that serves one request at a time; an LLM replica's batch is its concurrency).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Final

from vespid.control.policy import ScalingConfig
from vespid.control.policy_moves import plan_moves
from vespid.control.policy_stages import (
    bound_active,
    cold_target,
    fleet_perf,
    is_inactive,
    live_workers,
    workers_for,
)
from vespid.simulate.load import Arrival
from vespid.simulate.policies import Action, VespidPolicy, idle_newest_first
from vespid.simulate.workers import SimFleet

__all__ = ["VAST_DEFAULTS", "RayServe", "VastLike"]

# Vast's defaults, and vespid's before issue 15 where Vast has none.
VAST_DEFAULTS: Final = {
    "target_util": 0.9,
    "cold_mult": 2.5,
    "cold_workers": 5,
    "scale_down_delay": 30.0,
    "target_queue_time": 10.0,
    "reservoir_workers": 0,
}


@dataclass(slots=True)
class VastLike:
    """Vast's formula and defaults, with a cold pool refilled after every wake."""

    max_workers: int
    name: str = "vast-like"
    initial_ready: int = 0
    initial_parked: int = 5  # its cold_workers, loaded and stopped
    views: VespidPolicy = field(init=False)
    pending_since: float | None = None
    peak: int = 0
    cold: int = 0  # the pool's target: up at once, down once it held scale_down_delay
    cold_since: float = 0.0

    def __post_init__(self) -> None:
        params = ScalingConfig.model_validate({**VAST_DEFAULTS, "max_workers": self.max_workers})
        self.views = VespidPolicy(params, name=self.name)

    def arrived(self, arrival: Arrival) -> None:
        self.views.arrived(arrival)

    def _delayed(self, current: int, desired: int, now: float, delay_s: float) -> int:
        """Up at once; down once the delay has passed, to the most wanted meanwhile."""
        if desired >= current:
            self.pending_since = None
            return desired
        if self.pending_since is None:
            self.pending_since, self.peak = now, desired
        self.peak = max(self.peak, desired)
        if now - self.pending_since < delay_s:
            return current
        self.pending_since = None
        return self.peak

    def _pool(self, wanted: int, now: float, delay_s: float) -> int:
        """The pool's target under the same delay as the active one (else every dip of
        the active target would throw away the refills it started a tick before)."""
        if wanted >= self.cold or now - self.cold_since >= delay_s:
            self.cold = wanted
        if wanted >= self.cold:
            self.cold_since = now
        return self.cold

    def tick(self, now: float, fleet: SimFleet) -> Action:
        snapshot = self.views.snapshot(now, fleet)
        params = snapshot.params
        perf = fleet_perf(snapshot)
        live = live_workers(snapshot)
        backlog = sum(w.cur_load for w in live) + snapshot.queued_load
        demand = max(snapshot.arrival_rate, backlog / max(params.target_queue_time, 1.0))
        demand += snapshot.rejected_load_rate
        wanted = workers_for(demand / params.target_util, perf)
        desired = bound_active(wanted, params, perf, inactive=is_inactive(snapshot))
        target = self._delayed(len(live), desired, now, params.scale_down_delay)
        cold = self._pool(cold_target(target, params), now, params.scale_down_delay)
        moves = plan_moves(snapshot, target, cold, fill_pool=True)
        return Action(moves.start, tuple(moves.stop), (), tuple(moves.park), tuple(moves.wake))


@dataclass(slots=True)
class RayServe:
    """Ray Serve's default autoscaling policy; ``target`` is target_ongoing_requests."""

    target: float
    max_workers: int
    tick_s: float
    name: str = "ray serve"
    initial_ready: int = 0
    initial_parked: int = 0
    look_back_s: float = 30.0
    smoothing: float = 1.0
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    samples: deque[tuple[float, int]] = field(default_factory=deque)
    streak: int = 0  # ticks in a row wanting more (> 0) or fewer (< 0)

    def arrived(self, arrival: Arrival) -> None:
        return None

    def _desired(self, current: int, ongoing: float) -> int:
        if current == 0:
            return 1 if ongoing > 0 else 0
        error = ongoing / (self.target * current)
        desired = math.ceil(current * (1 + (error - 1) * self.smoothing) - 1e-9)
        return max(0, min(desired, self.max_workers))

    def tick(self, now: float, fleet: SimFleet) -> Action:
        ongoing = fleet.ongoing()
        self.samples.append((now, ongoing))
        while self.samples and self.samples[0][0] <= now - self.look_back_s:
            self.samples.popleft()
        average = sum(c for _, c in self.samples) / len(self.samples)
        current = len(fleet.workers)
        desired = self._desired(current, average if current else ongoing)
        if desired == current or (current == 0 and desired > 0):
            self.streak = 0
            return Action(start=desired - current)
        up = desired > current
        self.streak = max(self.streak, 0) + 1 if up else min(self.streak, 0) - 1
        delay_s = self.upscale_delay_s if up else self.downscale_delay_s
        if abs(self.streak) * self.tick_s < delay_s - 1e-9:
            return Action()
        self.streak = 0
        if up:
            return Action(start=desired - current)
        return Action(stop=idle_newest_first(fleet, current - desired))
