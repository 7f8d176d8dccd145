"""The autoscaling policy: a pure function from a frozen snapshot of an endpoint to a decision.

``decide(snapshot, state) -> (Decision, PolicyState)`` does no I/O and never reads a
clock: ``snapshot.now`` is the time. Workload is the router's cost unit and perf is
workload/s (PROTOCOL.md §6). The stages, each a function of its own:

1. Perf. A worker's perf is its ``max_perf`` once benchmarked, else ``default_perf``;
   the fleet's perf is the mean ``max_perf`` of the benchmarked workers, else
   ``default_perf``.
2. Routing (PROTOCOL §6): queue time = ``cur_load / perf``; a READY worker whose queue
   time exceeds ``max_queue_time_s`` is *saturated* and the router sends it nothing.
   ``max_queue_time_s`` steers routing only: what it holds back shows up here as
   queued load.
3. Demand, in workload/s::

       occupancy = Σ cur_load of live workers holding sessions
       backlog   = Σ cur_load of the other live workers + queued_load
       horizon   = max(target_queue_time_s, 1 s)
       demand    = max(arrival_rate, occupancy + backlog / horizon) + rejected_load_rate

   Live workers are READY and STARTING ones. A session reserves its cost for as long
   as it is open, so occupancy counts in full (``cur_load`` holds the sessions,
   PROTOCOL §3, and a worker's requests ride in the same figure). Requests drain, so
   the backlog (requests on workers and in the router's queue) asks only for the rate
   that clears it within ``target_queue_time_s``: a fleet of capacity C serves C × T
   within T, and backlog beyond that adds capacity. Under a 1 s horizon it counts in
   full, Vast's convention (a load of W needs W/s), which ``target_queue_time_s = 0``
   selects. The arrival rate is a floor, not a term: in a steady state it and the
   backlog measure the same flow, and a session's creation cost, already in
   occupancy, would be counted twice. Load refused with 429 is demand too: that is
   what grows a fleet of occupied workers.
4. Active workers wanted = ``ceil(demand / target_util / perf)``, at least
   ``ceil(min_load / target_util / perf)``, at least 1 until the endpoint is inactive,
   at most ``max_workers``. The ceiling forgives float noise of 1e-9 (3.0000000000000004
   workers is 3).
5. Cold workers = ``max(cold_workers, ceil(active × cold_mult))``, at most
   ``max_workers − active``.
6. Delay: more workers apply at once; fewer only once ``now − pending_since >=
   scale_down_delay_s`` (wall clock, never ticks), and then to the most workers
   wanted at any point since ``pending_since``.
7. Scale from zero runs first: work waiting (a queued request, queued load or refused
   load) and no READY or STARTING worker -> start at least one now, with no delay.
8. Inactivity: no load, queue, sessions or refusals now, and none for
   ``inactivity_timeout_s`` (``now − last_activity_at``; ``<= 0`` disables) -> the
   min_load floor (usually 0) at once: the timeout was the wait.
9. Stops: ERRORED workers always (the start count replaces them); for a scale-down,
   STARTING workers first (newest first), then idle READY ones (slowest, then
   newest, first); never a worker with requests in flight, sessions or load.

Worked example: target_util 0.8, target_queue_time 10 s, perf 100; worker A READY
with cur_load 150 and a session, B READY with 250, C STARTING; queued_load 550,
rejected 30/s, arrival 120/s. occupancy = 150; backlog = 250 + 550 = 800, over 10 s
= 80; demand = max(120, 150 + 80) + 30 = 260; 260 / 0.8 = 325 -> 4 workers: one more
than the 3 live, started at once. With cold_mult 0.5, cold_workers 1, max_workers 5:
cold = max(1, ceil(4 × 0.5)) = 2, but only 5 − 4 = 1 fits. With target_queue_time 0
the backlog counts in full: max(120, 150 + 800) + 30 = 980 -> 1225 -> 13, cut to 5.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

__all__ = [
    "MIN_QUEUE_HORIZON_S",
    "ROUNDING_SLACK",
    "Decision",
    "Demand",
    "Direction",
    "PolicyState",
    "ScalingParams",
    "ScalingSnapshot",
    "WorkerPhase",
    "WorkerView",
    "apply_delay",
    "bound_active",
    "choose_stops",
    "cold_target",
    "decide",
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
    "worker_perf",
    "workers_for",
]

# The backlog drains over target_queue_time_s, but never over less than a second: with
# target_queue_time_s = 0 it counts in full, Vast's convention (a load of W needs W/s).
MIN_QUEUE_HORIZON_S: Final = 1.0
# Float noise forgiven when rounding up to whole workers.
ROUNDING_SLACK: Final = 1e-9


class WorkerPhase(enum.Enum):
    """Where a worker is in its life, as the control plane sees it."""

    STARTING = "starting"  # process launched, not yet ready: counts as capacity, takes no work
    READY = "ready"  # benchmarked and serving; routable unless saturated
    ERRORED = "errored"  # broken or silent; always stopped and replaced
    COLD = "cold"  # stopped but provisioned (model on disk): starts faster than a new one
    STOPPING = "stopping"  # told to stop: neither capacity nor load any more


class Direction(enum.Enum):
    """Which way a change in the number of active workers goes."""

    UP = "up"  # applies on the tick it is wanted (a zero delay), so it is never left pending
    DOWN = "down"  # waits scale_down_delay_s of wall clock
    NONE = "none"


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass(frozen=True, slots=True)
class ScalingParams:
    """An endpoint's scaling parameters (PROTOCOL.md §6) plus vespid's own two."""

    min_load: float = 0.0  # workload/s kept provisioned even with no demand
    target_util: float = 0.9  # fraction of capacity to aim for, in (0, 1]
    cold_mult: float = 0.0  # cold workers kept, as a multiple of the active ones
    cold_workers: int = 0  # at least this many cold workers
    max_workers: int = 4  # active plus cold
    inactivity_timeout_s: float = 300.0  # no activity this long -> scale to zero; <= 0: never
    max_queue_time_s: float = 30.0  # a READY worker with a longer queue time is saturated
    target_queue_time_s: float = 10.0  # queued load should be served within this
    scale_down_delay_s: float = 30.0  # wall-clock seconds of lower demand before scaling down
    default_perf: float = 100.0  # workload/s assumed for a worker not yet benchmarked

    def __post_init__(self) -> None:
        finite = math.isfinite
        checks = (
            ("min_load", finite(self.min_load) and self.min_load >= 0, "a finite number >= 0",
             "it is the workload/s kept provisioned; use 0 for none"),
            ("target_util", finite(self.target_util) and 0 < self.target_util <= 1, "in (0, 1]",
             "it is the fraction of capacity to aim for, e.g. 0.9 (1.0 for null workers)"),
            ("cold_mult", finite(self.cold_mult) and self.cold_mult >= 0, "a finite number >= 0",
             "use 0 to keep no cold workers beyond cold_workers"),
            ("cold_workers", _is_count(self.cold_workers), "an integer >= 0",
             "use 0 for no minimum"),
            ("max_workers", _is_count(self.max_workers), "an integer >= 0",
             "it counts active and cold workers; 0 keeps the endpoint empty"),
            ("inactivity_timeout_s", not math.isnan(self.inactivity_timeout_s), "a number",
             "use 0 to never scale to zero"),
            # inf is allowed: never saturated. NaN fails the comparison.
            ("max_queue_time_s", self.max_queue_time_s >= 0, ">= 0",
             "use 0 to route only to idle workers (null workers)"),
            ("target_queue_time_s",
             finite(self.target_queue_time_s) and self.target_queue_time_s >= 0,
             "a finite number >= 0", "use 0 to count queued load in full"),
            ("scale_down_delay_s",
             finite(self.scale_down_delay_s) and self.scale_down_delay_s >= 0,
             "a finite number >= 0", "use 0 to scale down at once"),
            ("default_perf", finite(self.default_perf) and self.default_perf > 0,
             "a finite number > 0", "it is the workload/s assumed before a benchmark, e.g. 100"),
        )  # fmt: skip
        for name, ok, rule, fix in checks:
            if not ok:
                raise ValueError(f"{name} must be {rule} (got {getattr(self, name)!r}); {fix}")


@dataclass(frozen=True, slots=True)
class WorkerView:
    """One worker as its latest report shows it."""

    worker_id: str
    state: WorkerPhase
    cur_load: float = 0.0  # workload in progress, open sessions included (PROTOCOL §3)
    max_perf: float | None = None  # workload/s; None until benchmarked
    sessions: int = 0  # open sessions
    in_flight: int = 0  # requests in progress
    started_at: float = 0.0  # same clock as ScalingSnapshot.now


@dataclass(frozen=True, slots=True)
class ScalingSnapshot:
    """Everything the policy may know about one endpoint at ``now``."""

    now: float
    params: ScalingParams
    workers: tuple[WorkerView, ...] = ()
    queued_load: float = 0.0  # workload waiting in the router's queue
    queued_requests: int = 0
    rejected_load_rate: float = 0.0  # workload/s refused with 429 lately
    arrival_rate: float = 0.0  # workload/s arriving, smoothed by the collector
    last_activity_at: float | None = None  # last load, queue, session or refusal seen


@dataclass(frozen=True, slots=True)
class PolicyState:
    """What the policy carries from one decision to the next."""

    pending_direction: Direction = Direction.NONE
    pending_since: float | None = None  # when the pending change was first wanted
    pending_peak: int = 0  # most active workers wanted since pending_since


@dataclass(frozen=True, slots=True)
class Decision:
    """What the autoscaler should do now.

    The provider stops the workers in ``stop`` (a stopped worker may join the cold
    pool, up to ``target_cold``) and starts ``start`` workers, activating cold ones
    first. ``start`` is counted from the snapshot, so a worker must show as STARTING
    from the moment it is launched or the next decision starts it again.
    """

    target_active: int  # active workers once this is carried out (busy ones kept count)
    target_cold: int  # cold workers to keep
    stop: tuple[str, ...]  # errored workers, then those chosen for a scale-down
    start: int  # workers to start or activate
    reason: str  # the figures behind it, for logs


@dataclass(frozen=True, slots=True)
class Demand:
    """The terms of the demand formula; ``total`` is in workload/s."""

    occupancy: float  # Σ cur_load of live workers holding sessions: counted in full
    backlog: float  # Σ cur_load of the other live workers + queued_load: it drains
    horizon_s: float  # max(target_queue_time_s, 1 s): the backlog should drain within it
    arrival: float  # workload/s arriving
    rejected: float  # workload/s refused with 429

    @property
    def held(self) -> float:
        """Occupancy plus the rate that drains the backlog within the horizon."""
        return self.occupancy + self.backlog / self.horizon_s

    @property
    def total(self) -> float:
        return max(self.arrival, self.held) + self.rejected


# -- workers -----------------------------------------------------------------

_LIVE: Final = frozenset({WorkerPhase.STARTING, WorkerPhase.READY})


def worker_perf(worker: WorkerView, params: ScalingParams) -> float:
    """``max_perf`` once benchmarked (and positive), else ``default_perf``."""
    if worker.max_perf is not None and worker.max_perf > 0:
        return worker.max_perf
    return params.default_perf


def fleet_perf(snapshot: ScalingSnapshot) -> float:
    """Mean max_perf of the benchmarked workers (errored ones aside), else default_perf.

    Example: READY at 100 and 200 plus one STARTING with no benchmark -> 150.
    """
    known: list[float] = []
    for worker in snapshot.workers:
        if worker.state is not WorkerPhase.ERRORED and worker.max_perf and worker.max_perf > 0:
            known.append(worker.max_perf)
    return sum(known) / len(known) if known else snapshot.params.default_perf


def queue_time_s(worker: WorkerView, params: ScalingParams) -> float:
    """The router's wait estimate: cur_load / perf (300 workload at 100/s -> 3 s)."""
    return worker.cur_load / worker_perf(worker, params)


def is_saturated(worker: WorkerView, params: ScalingParams) -> bool:
    """A READY worker whose queue time exceeds max_queue_time_s: the router skips it.

    Example: 3100 workload at 100/s is 31 s > 30 s; an occupied null worker (100 at
    100/s, 1 s) is saturated at max_queue_time 0 but not at 30 s.
    """
    if worker.state is not WorkerPhase.READY:
        return False
    return queue_time_s(worker, params) > params.max_queue_time_s


def is_routable(worker: WorkerView, params: ScalingParams) -> bool:
    """READY and not saturated: the router may send it work now."""
    return worker.state is WorkerPhase.READY and not is_saturated(worker, params)


def is_busy(worker: WorkerView) -> bool:
    """Requests in flight, open sessions or load: never stopped."""
    return worker.in_flight > 0 or worker.sessions > 0 or worker.cur_load > 0


def live_workers(snapshot: ScalingSnapshot) -> tuple[WorkerView, ...]:
    """READY and STARTING workers: the active ones, which count as capacity."""
    return tuple(w for w in snapshot.workers if w.state in _LIVE)


# -- demand and bounds -------------------------------------------------------


def measure_demand(snapshot: ScalingSnapshot) -> Demand:
    """The demand formula's terms (see the module docstring for the worked example)."""
    occupancy = backlog = 0.0
    for worker in live_workers(snapshot):
        if worker.sessions > 0:
            occupancy += worker.cur_load
        else:
            backlog += worker.cur_load
    return Demand(
        occupancy=occupancy,
        backlog=backlog + snapshot.queued_load,
        horizon_s=max(snapshot.params.target_queue_time_s, MIN_QUEUE_HORIZON_S),
        arrival=snapshot.arrival_rate,
        rejected=snapshot.rejected_load_rate,
    )


def workers_for(capacity: float, perf: float) -> int:
    """Whole workers of ``perf`` for ``capacity`` workload/s: ceil, forgiving float noise.

    Examples: 312.5 at 100 -> 4; (0.1 + 0.2) at 0.1 -> 3, not 4; 0 -> 0.
    """
    if capacity <= 0:
        return 0
    return max(0, math.ceil(capacity / perf - ROUNDING_SLACK))


def min_load_floor(params: ScalingParams, perf: float) -> int:
    """Workers kept for min_load: ceil(min_load / target_util / perf).

    Example: min_load 100 at target_util 0.9 and perf 100 -> 111.1 -> 2 workers; at 1.0 -> 1.
    """
    return workers_for(params.min_load / params.target_util, perf)


def bound_active(wanted: int, params: ScalingParams, perf: float, *, inactive: bool) -> int:
    """``wanted`` raised to the min_load floor and, while active, to 1; cut to max_workers."""
    floor = max(min_load_floor(params, perf), 0 if inactive else 1)
    return min(max(wanted, floor), params.max_workers)


def cold_target(active: int, params: ScalingParams) -> int:
    """max(cold_workers, ceil(active × cold_mult)), within max_workers − active.

    Example: 4 active, cold_mult 0.5, cold_workers 1, max_workers 5 -> max(1, 2) = 2 -> 1.
    """
    wanted = max(params.cold_workers, workers_for(active * params.cold_mult, 1.0))
    return max(0, min(wanted, params.max_workers - active))


def has_work(snapshot: ScalingSnapshot) -> bool:
    """Anything queued, refused, in progress or reserved right now."""
    return (
        snapshot.queued_requests > 0
        or snapshot.queued_load > 0
        or snapshot.rejected_load_rate > 0
        or any(is_busy(w) for w in live_workers(snapshot))
    )


def is_inactive(snapshot: ScalingSnapshot) -> bool:
    """No work now and none for inactivity_timeout_s (never, when that is <= 0).

    An endpoint that has never seen activity (``last_activity_at`` None) is inactive.
    """
    timeout_s = snapshot.params.inactivity_timeout_s
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


def apply_delay(
    current: int, desired: int, state: PolicyState, now: float, down_delay_s: float
) -> tuple[int, PolicyState]:
    """Scale up at once; scale down once ``now − pending_since >= down_delay_s``.

    A scale-down goes to the most workers wanted since it was first wanted (so a
    brief dip does not take the fleet below what the rest of the window needed).
    Wanting ``current`` or more at any tick cancels it. Example, delay 30 s, 3
    active: wanted 1 at t=0 and 2 at t=10 -> 3 until t=30, then 2.
    """
    if desired == current:
        return current, PolicyState()
    direction = Direction.UP if desired > current else Direction.DOWN
    delay_s = down_delay_s if direction is Direction.DOWN else 0.0
    if state.pending_direction is direction and state.pending_since is not None:
        since, peak = state.pending_since, max(state.pending_peak, desired)
    else:
        since, peak = now, desired
    if now - since >= delay_s:
        return (desired if direction is Direction.UP else peak), PolicyState()
    return current, PolicyState(direction, since, peak)


def choose_stops(
    workers: Iterable[WorkerView], count: int, params: ScalingParams
) -> tuple[str, ...]:
    """Up to ``count`` workers to stop for a scale-down, never a busy one.

    STARTING workers go first, newest first (the most start-up left to waste no more
    of); then idle READY workers, slowest first, then newest, then by id.
    """
    idle = [w for w in workers if not is_busy(w)]
    starting = sorted(
        (w for w in idle if w.state is WorkerPhase.STARTING),
        key=lambda w: (-w.started_at, w.worker_id),
    )
    ready = sorted(
        (w for w in idle if w.state is WorkerPhase.READY),
        key=lambda w: (worker_perf(w, params), -w.started_at, w.worker_id),
    )
    return tuple(w.worker_id for w in [*starting, *ready][: max(0, count)])


# -- the policy --------------------------------------------------------------


def _num(value: float) -> str:
    """312.5 -> '312.5', 300.0 -> '300', 1/3 -> '0.33'."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _explain_demand(demand: Demand, params: ScalingParams, perf: float, desired: int) -> str:
    capacity = demand.total / params.target_util
    text = (
        f"demand {_num(demand.total)} = max(arrival {_num(demand.arrival)}, occupancy "
        f"{_num(demand.occupancy)} + backlog {_num(demand.backlog)} / {_num(demand.horizon_s)} s)"
        f" + rejected {_num(demand.rejected)} workload/s; {_num(capacity)} at util "
        f"{_num(params.target_util)} / perf {_num(perf)} -> {desired} wanted"
    )
    by_demand = workers_for(capacity, perf)
    if desired < by_demand:
        text += f" (max_workers {params.max_workers})"
    elif desired > by_demand:
        text += f" (floor: min_load {_num(params.min_load)} or one while active)"
    return text


def _explain_delay(
    current: int, target: int, before: PolicyState, after: PolicyState, now: float, delay_s: float
) -> str:
    if target > current:
        return f"up {current} -> {target} at once"
    if target < current:
        since = before.pending_since if before.pending_since is not None else now
        return f"down {current} -> {target} after {_num(now - since)} s (delay {_num(delay_s)} s)"
    if after.pending_direction is Direction.DOWN and after.pending_since is not None:
        waited = _num(now - after.pending_since)
        return f"down {current} -> {after.pending_peak} pending ({waited} of {_num(delay_s)} s)"
    return f"steady at {current}"


def _act(
    snapshot: ScalingSnapshot, target: int, state: PolicyState, why: str
) -> tuple[Decision, PolicyState]:
    """Turn a target into stops and starts, and explain them."""
    params = snapshot.params
    live = live_workers(snapshot)
    excess = len(live) - target
    stop = choose_stops(live, excess, params) if excess > 0 else ()
    active = max(target, len(live) - len(stop))
    errored = tuple(w.worker_id for w in snapshot.workers if w.state is WorkerPhase.ERRORED)
    start = max(0, target - len(live))
    notes = [why]
    if active > target:
        notes.append(f"{active - target} busy kept")
    if errored:
        notes.append(f"replacing {len(errored)} errored ({', '.join(errored)})")
    cold = cold_target(active, params)
    notes.append(f"start {start}, stop {len(stop) + len(errored)}, cold {cold}")
    return Decision(active, cold, stop + errored, start, "; ".join(notes)), state


def decide(snapshot: ScalingSnapshot, state: PolicyState) -> tuple[Decision, PolicyState]:
    """The policy: scale from zero, else inactivity, else demand -> bounds -> delay."""
    params = snapshot.params
    perf = fleet_perf(snapshot)
    demand = measure_demand(snapshot)
    current = len(live_workers(snapshot))
    fast = scale_from_zero(snapshot, demand, perf)
    if fast is not None:
        why = (
            f"scale from zero: {snapshot.queued_requests} requests ({_num(snapshot.queued_load)}"
            f" workload) queued, {_num(snapshot.rejected_load_rate)} workload/s refused, "
            f"no worker ready or starting -> {fast} at once"
        )
        return _act(snapshot, fast, PolicyState(), why)
    if is_inactive(snapshot):
        target = bound_active(0, params, perf, inactive=True)
        last = snapshot.last_activity_at
        idle = "never active" if last is None else f"idle {_num(snapshot.now - last)} s"
        why = (
            f"inactive ({idle}, timeout {_num(params.inactivity_timeout_s)} s) -> {target} "
            f"(min_load {_num(params.min_load)})"
        )
        return _act(snapshot, target, PolicyState(), why)
    desired = bound_active(
        workers_for(demand.total / params.target_util, perf), params, perf, inactive=False
    )
    target, after = apply_delay(current, desired, state, snapshot.now, params.scale_down_delay_s)
    why = (
        _explain_demand(demand, params, perf, desired)
        + "; "
        + _explain_delay(current, target, state, after, snapshot.now, params.scale_down_delay_s)
    )
    return _act(snapshot, target, after, why)
