"""The autoscaling policy: a pure function from a frozen snapshot of an endpoint to a decision.

``decide(snapshot, state) -> (Decision, PolicyState)`` does no I/O and never reads a
clock: ``snapshot.now`` is the time. Workload is the router's cost unit and perf is
workload/s (PROTOCOL.md §6). The stages, each a function of its own:

1. Perf. A worker's perf is its ``max_perf`` once benchmarked, else ``default_perf``;
   the fleet's perf is the mean ``max_perf`` of the benchmarked workers, else
   ``default_perf``.
2. Routing (PROTOCOL §6): queue time = ``cur_load / perf``; a READY worker whose queue
   time exceeds ``max_queue_time`` is *saturated* and the router sends it nothing.
   ``max_queue_time`` steers routing only: what it holds back shows up here as
   queued load.
3. Demand (Little's law), in workload/s::

       occupancy = Σ cur_load of live workers holding sessions
       running   = Σ (cur_load − waiting_load) of the other live workers
       backlog   = Σ waiting_load of the other live workers + queued_load
       horizon   = max(target_queue_time − queue age, 1 s)
       demand    = max(arrival_rate, occupancy) + backlog / horizon + rejected_load_rate

   Live workers are READY, WAKING and STARTING ones. Work running on a worker is being
   served at the rate the arrival rate already asks for (needed concurrency = arrival
   rate × service time), and no new worker speeds it up: it is not demand. Work not yet
   started is backlog, drained within what is left of ``target_queue_time`` for the
   oldest request not yet started (its queue age: the oldest of the router's queue and
   the live workers' own queues, ``policy_queue.queue_age_s``). A session reserves its
   cost for as long as it is open, so occupancy counts in full (``cur_load`` holds the
   sessions, PROTOCOL §3). With ``target_queue_time = 0`` all load counts in full as backlog
   (Vast's convention, a load of W needs W/s). Load refused with 429 is demand too.
4. Active workers wanted = ``ceil(demand / target_util / perf)``, at least
   ``ceil(min_load / target_util / perf)``, at least 1 until the endpoint is inactive,
   at most ``max_workers``. Perf is a full batch's throughput, so ``target_util = 1``
   aims at full batches; the backlog term is the headroom. The ceiling forgives float
   noise of 1e-9 (3.0000000000000004 workers is 3).
5. Cold pool (parked workers) = ``max(cold_workers, ceil(active × cold_mult))``, or in
   reservoir mode (``reservoir_workers`` R > 0) ``max(cold_workers, R − active)``; at
   most ``max_workers − active``.
6. Stabilization window: the target is the most active workers wanted at any tick of
   the last ``scale_down_delay`` seconds, this one included, re-evaluated every tick
   (more apply at once); a fresh state counts the fleet as it is as wanted now.
7. Scale from zero runs first: work waiting (a queued request, queued load or refused
   load) and no READY, WAKING or STARTING worker -> at least one now, with no window.
8. Inactivity: no load, queue, sessions or refusals now (DRAINING workers' included),
   and none for ``inactivity_timeout`` (``now − last_activity_at``; ``<= 0`` disables)
   -> the min_load floor (usually 0) at once: the timeout was the wait.
9. Moves (``policy_moves.py``): up -> DRAINING workers taken back, then PARKED ones
   woken, then starts; down -> STARTING workers, then idle READY ones (parked while the
   pool is short, else stopped), then busy READY ones drained; emptied DRAINING ones
   parked or stopped; parked beyond the pool stopped, and on an inactive endpoint
   parked ``park_timeout`` s or more stopped (scale to zero reaches zero workers). ERRORED
   workers are always
   stopped (the start count replaces them). No worker is started only to be parked.
10. Ready timeout, run before everything: a STARTING worker older than
    ``ready_timeout_s`` is ERRORED (so stopped and replaced) and failed before ready. A
    WAKING worker not READY ``WAKE_TIMEOUT_S`` (120 s) after it was woken is ERRORED
    too, without counting toward the backoff.
11. Start backoff: workers that fail before they are ready (``start_failures`` gone
    plus the ERRORED ones present) hold starts for 1 s after the first, doubling up to
    60 s (``PolicyState.start_after``); a worker that becomes ready clears it.
12. Starts: what the moves want, less the starts already launching, none while backing
    off, cut to what the free GPUs fit (``held_for_gpus`` says how many wait) and to
    the room ``max_workers`` leaves.

The types are in ``policy_types.py``, the stages in ``policy_stages.py``; this module
composes them and explains each decision in its ``reason``.

Worked example: target_util 0.8, target_queue_time 10 s, perf 100; worker A READY
with cur_load 150 and a session, B READY with 250 waiting, C STARTING; queued_load 550,
rejected 30/s, arrival 120/s. occupancy = 150; backlog = 250 + 550 = 800, over 10 s =
80; demand = max(120, 150) + 80 + 30 = 260; 260 / 0.8 = 325 -> 4 workers: one more than
the 3 live, started at once. If the oldest queued request had waited 6 s, the 4 s left
give 800 / 4 = 200 and demand 380 -> 5. With cold_mult 0.5, cold_workers 1,
max_workers 5: cold = max(1, ceil(4 × 0.5)) = 2, but only 5 − 4 = 1 fits. With
target_queue_time 0 the backlog counts in full: max(120, 150) + 800 + 30 = 980 -> 1225
-> 13, cut to 5.
"""

from __future__ import annotations

from dataclasses import replace

from vespid.control.policy_moves import plan_moves
from vespid.control.policy_stages import (
    bound_active,
    cold_target,
    expire_starting,
    expire_waking,
    fleet_perf,
    is_inactive,
    live_workers,
    measure_demand,
    scale_from_zero,
    stabilize,
    start_backoff,
    starts_now,
    workers_for,
)
from vespid.control.policy_types import (
    DEFAULT_PERF,
    WAKE_TIMEOUT_S,
    Decision,
    Demand,
    PolicyState,
    ScalingConfig,
    ScalingSnapshot,
    WorkerPhase,
    WorkerView,
)

__all__ = [
    "DEFAULT_PERF",
    "Decision",
    "Demand",
    "PolicyState",
    "ScalingConfig",
    "ScalingSnapshot",
    "WorkerPhase",
    "WorkerView",
    "decide",
]


# -- the policy --------------------------------------------------------------


def _num(value: float) -> str:
    """312.5 -> '312.5', 300.0 -> '300', 1/3 -> '0.33'."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _explain_demand(demand: Demand, params: ScalingConfig, perf: float, desired: int) -> str:
    capacity = demand.total / params.target_util
    arrival, occupancy, backlog = map(_num, (demand.arrival, demand.occupancy, demand.backlog))
    terms = (
        f"max(arrival {arrival}, occupancy {occupancy} + load {backlog}) (in full)"
        if demand.in_full
        else f"max(arrival {arrival}, occupancy {occupancy}) + backlog {backlog} / "
        f"{_num(demand.horizon_s)} s"
    )
    text = (
        f"demand {_num(demand.total)} = {terms} + rejected {_num(demand.rejected)} workload/s "
        f"(running {_num(demand.running)}); {_num(capacity)} at util "
        f"{_num(params.target_util)} / perf {_num(perf)} -> {desired} wanted"
    )
    by_demand = workers_for(capacity, perf)
    if desired < by_demand:
        text += f" (max_workers {params.max_workers})"
    elif desired > by_demand:
        text += f" (floor: min_load {_num(params.min_load)} or one while active)"
    return text


def _explain_window(current: int, desired: int, target: int, window_s: float) -> str:
    if target > current:
        return f"up {current} -> {target} at once"
    if target < current:
        return f"down {current} -> {target} (most wanted over {_num(window_s)} s)"
    if desired < target:
        return f"steady at {current}: {desired} wanted now, {target} within {_num(window_s)} s"
    return f"steady at {current}"


def _explain_starts(
    snapshot: ScalingSnapshot, state: PolicyState, wanted: int, held: int
) -> list[str]:
    """Why fewer workers start than are wanted, if they do."""
    notes = []
    if wanted and snapshot.launching:
        notes.append(f"{min(wanted, snapshot.launching)} already launching")
    start_after = state.start_after
    if wanted > snapshot.launching and start_after is not None and snapshot.now < start_after:
        notes.append(
            f"starts held {_num(start_after - snapshot.now)} s more: "
            f"{state.start_failures} worker(s) in a row failed before ready (backoff)"
        )
    if held:
        notes.append(
            f"{held} held for GPUs ({snapshot.free_gpus} free, "
            f"{snapshot.gpus_per_worker} per worker)"
        )
    return notes


def _act(
    snapshot: ScalingSnapshot,
    target: int,
    state: PolicyState,
    why: str,
    expired: tuple[tuple[str, ...], tuple[str, ...]],
) -> tuple[Decision, PolicyState]:
    """Turn a target into moves, stops and starts, and explain them. ``state`` carries the
    window and the backoff; ``expired`` is (STARTING past the ready timeout, WAKING past
    the wake timeout)."""
    timed_out, unwoken = expired
    cold = cold_target(target, snapshot.params)
    moves = plan_moves(snapshot, target, cold)
    errored = tuple(w.worker_id for w in snapshot.workers if w.state is WorkerPhase.ERRORED)
    start, held = starts_now(snapshot, state, moves.start)
    notes = [why]
    if moves.busy_kept:
        notes.append(f"{moves.busy_kept} busy drained")
    if moves.expired:
        timeout_s = _num(snapshot.params.park_timeout)
        notes.append(f"{moves.expired} parked past park_timeout {timeout_s} s stopped")
    if errored:
        late = [f"{', '.join(timed_out)} not ready within {_num(snapshot.ready_timeout_s)} s"]
        late += [f"{', '.join(unwoken)} not awake within {_num(WAKE_TIMEOUT_S)} s"]
        why_errored = "; ".join(late[i] for i, ids in enumerate(expired) if ids)
        notes.append(
            f"replacing {len(errored)} errored ({', '.join(errored)}"
            f"{'; ' + why_errored if why_errored else ''})"
        )
    notes.append(
        f"wake {len(moves.wake)}, start {start}, drain {len(moves.drain)}, "
        f"park {len(moves.park)}, stop {len(moves.stop) + len(errored)}, cold {cold}"
    )
    notes += _explain_starts(snapshot, state, moves.start, held)
    decision = Decision(
        target, cold, tuple(moves.stop) + errored, start, "; ".join(notes),
        held_for_gpus=held, timed_out=timed_out, drain=tuple(moves.drain),
        park=tuple(moves.park), wake=tuple(moves.wake),
    )  # fmt: skip
    return decision, state


def decide(snapshot: ScalingSnapshot, state: PolicyState) -> tuple[Decision, PolicyState]:
    """The policy: the ready and wake timeouts and the start backoff first; then scale
    from zero, else inactivity, else demand -> bounds -> window; then the moves."""
    snapshot, timed_out = expire_starting(snapshot)
    snapshot, unwoken = expire_waking(snapshot)
    expired = (timed_out, unwoken)
    state = start_backoff(snapshot, state)
    params = snapshot.params
    perf = fleet_perf(snapshot)
    demand = measure_demand(snapshot)
    current = len(live_workers(snapshot))
    fast = scale_from_zero(snapshot, demand, perf)
    if fast is not None:
        why = (
            f"scale from zero: {snapshot.queued_requests} requests ({_num(snapshot.queued_load)}"
            f" workload) queued, {_num(snapshot.rejected_load_rate)} workload/s refused, "
            f"no worker ready, waking or starting -> {fast} at once"
        )
        _, state = stabilize(fast, state, snapshot.now, params.scale_down_delay)
        return _act(snapshot, fast, state, why, expired)
    if is_inactive(snapshot):
        target = bound_active(0, params, perf, inactive=True)
        last = snapshot.last_activity_at
        idle = "never active" if last is None else f"idle {_num(snapshot.now - last)} s"
        why = (
            f"inactive ({idle}, timeout {_num(params.inactivity_timeout)} s) -> {target} "
            f"(min_load {_num(params.min_load)})"
        )
        return _act(snapshot, target, replace(state, window=()), why, expired)
    desired = bound_active(
        workers_for(demand.total / params.target_util, perf), params, perf, inactive=False
    )
    if not state.window:  # a fresh state: the fleet as it is was wanted until now
        state = replace(state, window=((snapshot.now, current),))
    target, state = stabilize(desired, state, snapshot.now, params.scale_down_delay)
    why = (
        _explain_demand(demand, params, perf, desired)
        + "; "
        + _explain_window(current, desired, target, params.scale_down_delay)
    )
    return _act(snapshot, target, state, why, expired)
