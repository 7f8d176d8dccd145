"""Which workers a decision moves: the drains, parks, wakes and stops that take an
endpoint's fleet to its targets, and how many workers it must start.

``plan_moves(snapshot, target, cold)`` is pure, like every stage of the policy. Its rules,
in order (docs/autoscaler.md, "Moves"):

* **Up** (``target`` above the live workers): DRAINING workers are taken back first (they
  are loaded and serving: back to READY at once), then PARKED ones are woken (most
  recently parked first), and only what those do not cover is started.
* **Down** (``target`` below): STARTING workers first (newest first), then idle READY ones
  (slowest, then newest first), then busy READY ones (least loaded first). A STARTING one
  is kept while the cold pool is short (it is parked once ready), else stopped; an idle
  READY one is parked while the pool is short, else stopped; a busy one is drained.
* DRAINING workers not taken back and now empty are parked while the pool is short, else
  stopped; PARKED workers beyond the pool are stopped (longest parked first).
* **Park timeout**: on a scale-down or a steady tick of an inactive endpoint, PARKED workers
  parked ``park_timeout`` seconds or more are stopped whatever the pool wants, so that
  scale to zero reaches zero workers instead of keeping the pool (and its machines)
  forever; ``park_timeout <= 0`` keeps them.
* vespid's policy never starts a worker only to park it: the pool holds the workers a
  scale-down freed (a cold start costs 30 s of a GPU to save a 5 s wake later, and on a
  bursty trace most such loads were thrown away). ``fill_pool`` starts workers to fill it,
  Vast's way, for the Vast-like baseline; busy DRAINING workers and kept STARTING ones
  count toward it.

WAKING workers are never moved: they are capacity on their way to READY. No decision
starts more workers than ``max_workers`` leaves room for, parked and draining ones
counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vespid.control.policy_stages import is_busy, is_inactive, live_workers, worker_perf
from vespid.control.policy_types import ScalingSnapshot, WorkerPhase, WorkerView

__all__ = ["Moves", "parked_too_long", "plan_moves"]


@dataclass(slots=True)
class Moves:
    """What one decision does to the fleet, before the start gates (backoff, GPUs)."""

    stop: list[str] = field(default_factory=list)
    drain: list[str] = field(default_factory=list)
    park: list[str] = field(default_factory=list)
    wake: list[str] = field(default_factory=list)
    start: int = 0  # new workers wanted: for the active target, then for the pool
    busy_kept: int = 0  # workers over target that are draining (busy: serve out, then go)
    expired: int = 0  # PARKED workers stopped for park_timeout (in ``stop``)


def _of(snapshot: ScalingSnapshot, phase: WorkerPhase) -> list[WorkerView]:
    return [w for w in snapshot.workers if w.state is phase]


def parked_too_long(snapshot: ScalingSnapshot) -> list[WorkerView]:
    """The PARKED workers of an inactive endpoint parked ``park_timeout`` seconds or more
    (``now − phase_since``), longest parked first; none when ``park_timeout <= 0``.

    Example: park_timeout 300, idle since t = 1000 with inactivity_timeout 300: the
    workers parked at t = 1300 are stopped at t = 1600.
    """
    timeout_s = snapshot.params.park_timeout
    if timeout_s <= 0 or not is_inactive(snapshot):
        return []
    parked = _of(snapshot, WorkerPhase.PARKED)
    expired = [w for w in parked if snapshot.now - w.phase_since >= timeout_s]
    return sorted(expired, key=lambda w: (w.phase_since, w.worker_id))


def _scale_up(snapshot: ScalingSnapshot, need: int, moves: Moves) -> list[WorkerView]:
    """Take back DRAINING workers, then wake PARKED ones, for ``need`` more active
    workers; the rest is started. Returns the PARKED workers left."""
    draining = sorted(_of(snapshot, WorkerPhase.DRAINING), key=lambda w: (-w.cur_load, w.worker_id))
    back = draining[:need]
    parked = sorted(_of(snapshot, WorkerPhase.PARKED), key=lambda w: (-w.phase_since, w.worker_id))
    woken = parked[: need - len(back)]
    moves.wake += [w.worker_id for w in [*back, *woken]]
    moves.start += need - len(back) - len(woken)
    return parked[len(woken) :]


def _scale_down(snapshot: ScalingSnapshot, excess: int, cold: int, pool: int, moves: Moves) -> int:
    """Take ``excess`` workers out of the active ones; returns the pool as it will be
    (parked now, or kept STARTING to be parked once ready)."""
    perf = snapshot.default_perf
    starting = sorted(
        _of(snapshot, WorkerPhase.STARTING), key=lambda w: (-w.started_at, w.worker_id)
    )
    ready = _of(snapshot, WorkerPhase.READY)
    idle = sorted((w for w in ready if not is_busy(w)),
                  key=lambda w: (worker_perf(w, perf), -w.started_at, w.worker_id))  # fmt: skip
    busy = sorted((w for w in ready if is_busy(w)), key=lambda w: (w.cur_load, w.worker_id))
    for worker in [*starting, *idle, *busy][: max(0, excess)]:
        if worker.state is WorkerPhase.READY and is_busy(worker):
            moves.drain.append(worker.worker_id)
            moves.busy_kept += 1
        elif pool < cold:
            pool += 1
            if worker.state is WorkerPhase.READY:
                moves.park.append(worker.worker_id)
        else:
            moves.stop.append(worker.worker_id)
    return pool


def plan_moves(
    snapshot: ScalingSnapshot, target: int, cold: int, *, fill_pool: bool = False
) -> Moves:
    """The moves that bring ``snapshot``'s fleet to ``target`` active workers and at most
    ``cold`` parked ones (see the module docstring for the rules and their order); with
    ``fill_pool``, new workers are started to fill the pool too (Vast's way)."""
    moves = Moves()
    live = len(live_workers(snapshot))
    parked = _of(snapshot, WorkerPhase.PARKED)
    if target > live:
        parked = _scale_up(snapshot, target - live, moves)
        pool = len(parked)
    else:  # a parked worker past park_timeout is stopped, not counted in the pool
        expired = parked_too_long(snapshot)
        moves.stop += [w.worker_id for w in expired]
        moves.expired = len(expired)
        parked = [w for w in parked if w not in expired]
        pool = _scale_down(snapshot, live - target, cold, len(parked), moves)
    for worker in _of(snapshot, WorkerPhase.DRAINING):
        if worker.worker_id in moves.wake:
            continue
        if is_busy(worker):
            pool += 1 if pool < cold else 0  # it is parked once empty, if still wanted
        elif pool < cold:
            moves.park.append(worker.worker_id)
            pool += 1
        else:
            moves.stop.append(worker.worker_id)
    surplus = sorted(parked, key=lambda w: (w.phase_since, w.worker_id))[: max(0, pool - cold)]
    moves.stop += [w.worker_id for w in surplus]
    if fill_pool:
        moves.start += max(0, cold - pool)
    kept = sum(1 for w in snapshot.workers if w.state not in _GONE) - len(moves.stop)
    moves.start = max(0, min(moves.start, snapshot.params.max_workers - kept))
    return moves


# Workers that hold no place in max_workers any more: being stopped, or errored (always
# stopped, and replaced by the start count).
_GONE = frozenset({WorkerPhase.ERRORED, WorkerPhase.STOPPING})
