"""The autoscaling policy's stages: small pure functions, each tested on its own.

``decide`` (in ``policy.py``) composes them; the formulas and a worked example are in
its module docstring and in docs/autoscaler.md. Besides the demand stages this module
holds the rules that gate starts: the ready timeout (``expire_starting``), the start
backoff (``start_backoff``: 1 s after the first worker that fails before it is ready,
doubling up to 60 s, cleared once a worker becomes ready) and GPU fitting
(``fit_gpus``: no more starts than the free GPUs fit). None of them does I/O or reads a
clock: ``snapshot.now`` is the time.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Final

from vespid.control.policy_queue import queue_age_s
from vespid.control.policy_types import (
    WAKE_TIMEOUT_S,
    Demand,
    PolicyState,
    ScalingConfig,
    ScalingSnapshot,
    WorkerPhase,
    WorkerView,
)
from vespid.control.policy_wait import queue_time_s, worker_perf

__all__ = [
    "MAX_COUNTED_WORKERS",
    "MAX_START_BACKOFF_S",
    "MIN_QUEUE_HORIZON_S",
    "ROUNDING_SLACK",
    "accepts_work",
    "backing_off",
    "backoff_delay_s",
    "bound_active",
    "cold_target",
    "count_start_failures",
    "expire_starting",
    "expire_waking",
    "fit_gpus",
    "fleet_perf",
    "has_work",
    "is_busy",
    "is_inactive",
    "is_routable",
    "is_saturated",
    "live_workers",
    "measure_demand",
    "min_load_floor",
    "queue_time_s",
    "scale_from_zero",
    "stabilize",
    "start_backoff",
    "starts_now",
    "worker_perf",
    "workers_for",
]

# The backlog drains over target_queue_time, but never over less than a second: with
# target_queue_time = 0 it counts in full, Vast's convention (a load of W needs W/s).
MIN_QUEUE_HORIZON_S: Final = 1.0
# Float noise forgiven when rounding up to whole workers.
ROUNDING_SLACK: Final = 1e-9
# The most workers any demand asks for (max_workers cuts it further): counting stops here,
# so a demand of inf workload/s is a number like any other.
MAX_COUNTED_WORKERS: Final = 10**9
# The longest wait between starts for an endpoint whose workers keep failing.
MAX_START_BACKOFF_S: Final = 60.0

# -- workers -----------------------------------------------------------------

_LIVE: Final = frozenset({WorkerPhase.STARTING, WorkerPhase.READY, WorkerPhase.WAKING})


def fleet_perf(snapshot: ScalingSnapshot) -> float:
    """Mean max_perf of the benchmarked workers (errored ones aside), else default_perf.

    Example: READY at 100 and 200 plus one STARTING with no benchmark -> 150.
    """
    known: list[float] = []
    for worker in snapshot.workers:
        if worker.state is not WorkerPhase.ERRORED and worker.max_perf and worker.max_perf > 0:
            known.append(worker.max_perf)
    if not known:
        return snapshot.default_perf
    # Each term divided first, so a fleet of huge figures cannot overflow the sum (nor
    # the tiniest underflow to 0).
    mean = sum(perf / len(known) for perf in known)
    return mean if mean > 0 else max(known)


def accepts_work(phase: WorkerPhase, wait_s: float, max_queue_time: float) -> bool:
    """The routing rule, the one place it is written: READY, with a queue time of at most
    ``max_queue_time`` seconds. The router applies it to its own wait estimate (which counts
    load routed since the last report); the policy to a ``WorkerView``.

    Example: READY with 3000 workload at 100/s waits 30 s: accepted at 30 s, not at 29 s.
    """
    return phase is WorkerPhase.READY and wait_s <= max_queue_time


def is_routable(worker: WorkerView, snapshot: ScalingSnapshot) -> bool:
    """READY and not saturated: the router may send it work now."""
    wait_s = queue_time_s(worker, snapshot.default_perf)
    return accepts_work(worker.state, wait_s, snapshot.params.max_queue_time)


def is_saturated(worker: WorkerView, snapshot: ScalingSnapshot) -> bool:
    """A READY worker whose queue time exceeds max_queue_time: the router skips it.

    Example: 3100 workload at 100/s is 31 s > 30 s; an occupied null worker (100 at
    100/s, 1 s) is saturated at max_queue_time 0 but not at 30 s.
    """
    return worker.state is WorkerPhase.READY and not is_routable(worker, snapshot)


def is_busy(worker: WorkerView) -> bool:
    """Requests in flight, open sessions or load: never stopped."""
    return worker.in_flight > 0 or worker.sessions > 0 or worker.cur_load > 0


def live_workers(snapshot: ScalingSnapshot) -> tuple[WorkerView, ...]:
    """READY, STARTING and WAKING workers: the active ones, which count as capacity."""
    return tuple(w for w in snapshot.workers if w.state in _LIVE)


# -- demand and bounds -------------------------------------------------------


def measure_demand(snapshot: ScalingSnapshot) -> Demand:
    """The demand formula's terms (see the module docstring for the worked example).

    Little's law: work running on a worker is being served at the rate the arrival rate
    already asks for, so only work not yet started (a worker's ``waiting_load``, the
    router's queue) is backlog, drained within what is left of ``target_queue_time`` for
    the oldest of them (``queue_age_s``); a session reserves its cost in full. With
    ``target_queue_time`` 0 every load counts as backlog, in full, with the arrival rate a
    floor under it (``Demand.total``): Vast's convention (a load of W needs W/s), and what
    a worker that reports no sessions and no waiting load needs to be scaled by its load.
    Adding the arrival rate on top there would ask twice for a request just arrived: it is
    in the rate and, waiting or just routed, in the load.
    """
    occupancy = backlog = running = 0.0
    in_full = snapshot.params.target_queue_time <= 0  # Vast's convention: all load waits
    live = live_workers(snapshot)
    for worker in live:
        if worker.sessions > 0:
            occupancy += worker.cur_load
            continue
        waiting = (
            worker.cur_load if in_full else min(max(worker.waiting_load, 0.0), worker.cur_load)
        )
        backlog += waiting
        running += worker.cur_load - waiting
    left_s = snapshot.params.target_queue_time - queue_age_s(snapshot.oldest_wait_s, live)
    return Demand(
        occupancy=occupancy,
        backlog=backlog + snapshot.queued_load,
        horizon_s=max(left_s, MIN_QUEUE_HORIZON_S),
        arrival=snapshot.arrival_rate,
        rejected=snapshot.rejected_load_rate,
        running=running,
        in_full=in_full,
    )


def workers_for(capacity: float, perf: float) -> int:
    """Whole workers of ``perf`` for ``capacity`` workload/s: ceil, forgiving float noise.

    Examples: 312.5 at 100 -> 4; (0.1 + 0.2) at 0.1 -> 3, not 4; 0 -> 0; an infinite
    demand (the sum of finite loads near 1e308) -> ``MAX_COUNTED_WORKERS``, which
    ``max_workers`` then cuts.
    """
    if not capacity > 0:  # NaN too: nothing is asked
        return 0
    workers = capacity / perf - ROUNDING_SLACK
    if not workers < MAX_COUNTED_WORKERS:  # sums of huge finite figures overflow to inf
        return MAX_COUNTED_WORKERS
    return max(0, math.ceil(workers))


def min_load_floor(params: ScalingConfig, perf: float) -> int:
    """Workers kept for min_load: ceil(min_load / target_util / perf).

    Example: min_load 100 at target_util 0.9 and perf 100 -> 111.1 -> 2 workers; at 1.0 -> 1.
    """
    return workers_for(params.min_load / params.target_util, perf)


def bound_active(wanted: int, params: ScalingConfig, perf: float, *, inactive: bool) -> int:
    """``wanted`` raised to the min_load floor and, while active, to 1; cut to max_workers."""
    floor = max(min_load_floor(params, perf), 0 if inactive else 1)
    return min(max(wanted, floor), params.max_workers)


def cold_target(active: int, params: ScalingConfig) -> int:
    """Parked workers to keep: max(cold_workers, ceil(active × cold_mult)), or in reservoir
    mode (``reservoir_workers`` > 0) max(cold_workers, reservoir_workers − active); within
    max_workers − active either way.

    Examples: 4 active, cold_mult 0.5, cold_workers 1, max_workers 5 -> max(1, 2) = 2 -> 1;
    reservoir 6 with 4 active -> 2, with 0 active -> 6.
    """
    if params.reservoir_workers > 0:
        wanted = max(params.cold_workers, params.reservoir_workers - active)
    else:
        wanted = max(params.cold_workers, workers_for(active * params.cold_mult, 1.0))
    return max(0, min(wanted, params.max_workers - active))


def has_work(snapshot: ScalingSnapshot) -> bool:
    """Anything queued, refused, in progress or reserved right now."""
    return (
        snapshot.queued_requests > 0
        or snapshot.queued_load > 0
        or snapshot.rejected_load_rate > 0
        or any(is_busy(w) for w in live_workers(snapshot))
        or any(is_busy(w) for w in snapshot.workers if w.state is WorkerPhase.DRAINING)
    )


def is_inactive(snapshot: ScalingSnapshot) -> bool:
    """No work now and none for inactivity_timeout seconds (never, when that is <= 0).

    An endpoint that has never seen activity (``last_activity_at`` None) is inactive.
    """
    timeout_s = snapshot.params.inactivity_timeout
    if timeout_s <= 0 or has_work(snapshot):
        return False
    last = snapshot.last_activity_at
    return last is None or snapshot.now - last >= timeout_s


# -- stages ------------------------------------------------------------------


def scale_from_zero(snapshot: ScalingSnapshot, demand: Demand, perf: float) -> int | None:
    """The fast path, run first: work waiting and nothing READY or STARTING.

    Returns the workers to start at once (at least 1, at most max_workers), or None
    when the fast path does not apply. No delay, and nothing else in between.
    """
    if live_workers(snapshot):
        return None
    waiting = (
        snapshot.queued_requests > 0 or snapshot.queued_load > 0 or snapshot.rejected_load_rate > 0
    )
    if not waiting:
        return None
    params = snapshot.params
    wanted = max(1, workers_for(demand.total / params.target_util, perf))
    return bound_active(wanted, params, perf, inactive=False)


def stabilize(
    desired: int, state: PolicyState, now: float, window_s: float
) -> tuple[int, PolicyState]:
    """The most active workers wanted over the last ``window_s`` seconds, this tick included
    (Kubernetes' HPA stabilization window), re-evaluated every tick on the snapshot's clock.

    More workers apply at once; fewer once every tick that wanted more has left the window.
    The state keeps only the ticks that may still be the window's most (each wanting more
    than the next). Example, window 30 s: wanted 3 at t=0, 1 at t=5 and 2 at t=10 -> 3
    until t=30, then 2 until t=40, then 1.
    """
    kept = tuple(
        (at, wanted) for at, wanted in state.window if now - at < window_s and wanted > desired
    )
    window = (*kept, (now, desired))
    return window[0][1], replace(state, window=window)


# -- gates on starting ------------------------------------------------------------


def expire_starting(snapshot: ScalingSnapshot) -> tuple[ScalingSnapshot, tuple[str, ...]]:
    """STARTING workers older than ``ready_timeout_s`` become ERRORED (failed before ready).

    Returns the snapshot as the rest of the policy sees it, and the ids that timed out.
    Example: ready_timeout 600 s, started at 1000: at 1600 still STARTING, at 1600.25
    ERRORED, so it is stopped and counts toward the start backoff.
    """
    limit_s = snapshot.ready_timeout_s
    late = tuple(
        w.worker_id
        for w in snapshot.workers
        if w.state is WorkerPhase.STARTING and snapshot.now - w.started_at > limit_s
    )
    return _errored(snapshot, late, failed_before_ready=True)


def expire_waking(snapshot: ScalingSnapshot) -> tuple[ScalingSnapshot, tuple[str, ...]]:
    """WAKING workers not READY ``WAKE_TIMEOUT_S`` after they were woken (``phase_since``)
    become ERRORED, so stopped and replaced; they were ready once, so they do not count
    toward the start backoff, and the ready timeout never applies to them.

    Example: woken at 1000: still WAKING at 1120, ERRORED at 1120.5.
    """
    late = tuple(
        w.worker_id
        for w in snapshot.workers
        if w.state is WorkerPhase.WAKING and snapshot.now - w.phase_since > WAKE_TIMEOUT_S
    )
    return _errored(snapshot, late, failed_before_ready=False)


def _errored(
    snapshot: ScalingSnapshot, late: tuple[str, ...], *, failed_before_ready: bool
) -> tuple[ScalingSnapshot, tuple[str, ...]]:
    """``snapshot`` with the workers in ``late`` ERRORED, and ``late``."""
    if not late:
        return snapshot, ()
    workers = tuple(
        replace(
            w,
            state=WorkerPhase.ERRORED,
            failed_before_ready=failed_before_ready or w.failed_before_ready,
        )
        if w.worker_id in late
        else w
        for w in snapshot.workers
    )
    return replace(snapshot, workers=workers), late


def count_start_failures(snapshot: ScalingSnapshot) -> int:
    """Workers in a row that failed before they were ready: those already gone
    (``start_failures``) plus the ERRORED ones still in the snapshot that never were."""
    present = sum(
        1 for w in snapshot.workers if w.state is WorkerPhase.ERRORED and w.failed_before_ready
    )
    return snapshot.start_failures + present


def backoff_delay_s(failures: int) -> float:
    """The wait before the next start after ``failures`` failed starts in a row.

    Examples: 0 -> 0 s; 1 -> 1 s; 2 -> 2 s; 3 -> 4 s; 7 -> 60 s (64 capped); 1000 -> 60 s.
    """
    if failures <= 0:
        return 0.0
    return min(2.0 ** min(failures - 1, 16), MAX_START_BACKOFF_S)


def start_backoff(snapshot: ScalingSnapshot, state: PolicyState) -> PolicyState:
    """Set, keep or clear the start backoff from the failures the snapshot shows.

    A new count of failures sets ``start_after = now + backoff_delay_s(count)``; the same
    count keeps the deadline it set; none (a worker became ready) clears it. Example:
    first failure seen at 1000 -> no start before 1001; the second at 1002 -> 1004.
    """
    failures = count_start_failures(snapshot)
    if failures == state.start_failures:
        return state
    if failures == 0:
        return replace(state, start_failures=0, start_after=None)
    start_after = snapshot.now + backoff_delay_s(failures)
    return replace(state, start_failures=failures, start_after=start_after)


def backing_off(state: PolicyState, now: float) -> bool:
    """Whether starts wait for the backoff at ``now``."""
    return state.start_after is not None and now < state.start_after


def fit_gpus(wanted: int, free_gpus: int | None, gpus_per_worker: int) -> int:
    """``wanted`` cut to the workers the free GPUs fit (free GPUs already exclude those
    promised to starts in flight).

    Examples: 4 wanted, 2 free, 1 each -> 2; 3 wanted, 5 free, 2 each -> 2; GPUs not
    limited (None) or workers without GPUs -> all 4.
    """
    if wanted <= 0 or not gpus_per_worker or free_gpus is None:
        return max(0, wanted)
    return min(wanted, max(0, free_gpus) // gpus_per_worker)


def starts_now(snapshot: ScalingSnapshot, state: PolicyState, wanted: int) -> tuple[int, int]:
    """``(starts to make now, starts the free GPUs do not fit)`` for ``wanted`` more live
    workers: less the starts already launching, none while backing off, then cut to the
    GPUs. Example: 3 wanted, 1 launching, 1 free GPU at 1 each -> (1, 1)."""
    wanted = max(0, wanted - snapshot.launching)
    if not wanted or backing_off(state, snapshot.now):
        return 0, 0
    fits = fit_gpus(wanted, snapshot.free_gpus, snapshot.gpus_per_worker)
    return fits, wanted - fits
