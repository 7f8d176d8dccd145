"""Rolling updates: the policy's decision, adjusted so that an endpoint's workers move to
its current template revision without losing capacity. Pure: no clock, no I/O.

Each worker runs the revision it was started on (``WorkerView.revision``); the endpoint's
current one is ``ScalingSnapshot.revision``. While live workers of an older revision
remain (a *rollout*), ``roll`` turns the policy's decision into one that:

- starts new-revision workers until they reach the policy's target (``_target``), with at
  most ``max_surge(target)`` workers in service above the target at any time
  (``max(1, ceil(25% of the target))``: one extra worker for up to 4, two for 5 to 8);
- drains old READY workers (the router sends them nothing new) only as new ones are
  READY: the old READY ones kept are ``target - new READY``, so READY workers never
  number fewer than the target; the least loaded are drained first;
- stops old DRAINING workers once they are empty (no load, no request, no session) and
  have drained for ``DRAIN_GRACE_S`` (a request routed just before the drain reaches the
  worker within it); stops old STARTING and PARKED ones (they serve nothing yet, and
  would only be drained), and never wakes or parks an old worker;
- keeps the new-revision workers the policy would stop, drain or park to trim the surge
  (it trims the newest first, which the rollout would start again on the next tick): while
  a rollout runs, the fleet is trimmed by draining old workers down to the target. The
  surge may so take the fleet above ``max_workers`` by ``max_surge`` for the rollout's
  length, as Kubernetes' maxSurge does.

Worked example: target 2, two old READY workers, surge 1. Tick 1: one new worker starts
(3 in service). Tick 5: it is READY: one old worker is drained (old kept = 2 - 1), and a
second new one starts. Once that one is READY the last old one drains; each drained one
is stopped when empty. READY workers were 2 or more all along.

A new-revision worker that fails before it is ready (errored, or past its ready timeout)
*halts* the rollout: nothing more is drained, and new workers start on the last revision
every live worker ran (``RolloutState.good_revision``; not known, the one before), so the
old workers keep serving.
A new revision (an update or a rollback) starts a new rollout, which resumes. A rollout
is *done* once no live worker runs another revision; that revision is then the good one.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, Final

from vespid.control.policy_types import Decision, ScalingSnapshot, WorkerPhase, WorkerView

__all__ = [
    "DRAIN_GRACE_S",
    "SURGE_FRACTION",
    "RolloutState",
    "RolloutStep",
    "max_surge",
    "roll",
    "rollout_status",
]

SURGE_FRACTION: Final = 0.25  # workers in service above the target during a rollout
DRAIN_GRACE_S: Final = 2.0  # a drained worker is stopped no sooner than this, even if empty

_LIVE: Final = frozenset(
    {
        WorkerPhase.STARTING,
        WorkerPhase.READY,
        WorkerPhase.WAKING,
        WorkerPhase.DRAINING,
        WorkerPhase.PARKED,
    }
)
_UP: Final = frozenset({WorkerPhase.STARTING, WorkerPhase.READY, WorkerPhase.WAKING})


@dataclass(frozen=True, slots=True)
class RolloutState:
    """What the rollout of one endpoint carries from one decision to the next."""

    revision: int = 0  # the revision being rolled out (0: none seen yet)
    good_revision: int = 0  # the last revision every live worker ran (0: not known yet)
    halted: str = ""  # why the rollout stopped; empty while it runs or once it is done
    target: int = 0  # the active workers the rollout keeps (see ``_target``)

    @property
    def done(self) -> bool:
        return self.revision > 0 and self.good_revision == self.revision


@dataclass(frozen=True, slots=True)
class RolloutStep:
    """The adjusted decision, the state to carry, and the revision new workers run."""

    decision: Decision
    state: RolloutState
    start_revision: int


def max_surge(target: int) -> int:
    """Workers in service above ``target`` a rollout may have: 1 up to 4, then 25%."""
    return max(1, math.ceil(target * SURGE_FRACTION))


def roll(snapshot: ScalingSnapshot, decision: Decision, state: RolloutState) -> RolloutStep:
    """``decision`` adjusted for the endpoint's rollout (see the module docstring)."""
    rev = snapshot.revision
    if state.revision != rev:  # a new revision: a new rollout (resumes a halted one)
        state = RolloutState(rev, state.good_revision)
    live = [w for w in snapshot.workers if w.state in _LIVE]
    if state.halted:
        return RolloutStep(decision, state, _fallback(state, rev))
    if not any(w.revision != rev for w in live):
        return RolloutStep(decision, RolloutState(rev, rev), rev)
    if failed := _failed(snapshot, decision):
        why = f"worker {failed.worker_id} on revision {rev} failed before it was ready"
        state = replace(state, halted=why)
        return RolloutStep(decision, state, _fallback(state, rev))
    state = replace(state, target=_target(decision, state))
    return RolloutStep(_replace_old(snapshot, decision, state.target), state, rev)


def _target(decision: Decision, state: RolloutState) -> int:
    """The active workers to keep: the policy's target when the rollout began, raised by
    its scale-ups (a decision that starts workers) and lowered by its scale-downs. Not
    the policy's target as such: while it holds a scale-down it counts every active
    worker, the rollout's surge included, and would grow the surge without end."""
    if decision.start > 0 or not state.target:
        return decision.target_active
    return min(state.target, decision.target_active)


def _fallback(state: RolloutState, rev: int) -> int:
    """The revision new workers run while halted: the good one, else (not known, as
    after a restart of the control plane) the one before ``rev``."""
    return state.good_revision or max(1, rev - 1)


def _failed(snapshot: ScalingSnapshot, decision: Decision) -> WorkerView | None:
    """A worker on the current revision that failed before it was ready, if any."""
    for w in snapshot.workers:
        if w.revision == snapshot.revision and (
            w.failed_before_ready or w.worker_id in decision.timed_out
        ):
            return w
    return None


def _replace_old(snapshot: ScalingSnapshot, decision: Decision, target: int) -> Decision:
    """Start new workers within the surge, drain old READY ones as new ones are READY,
    stop the old ones that serve nothing."""
    rev = snapshot.revision
    decision = _spare_new(snapshot, decision)
    taken = {*decision.stop, *decision.drain, *decision.park}
    old = [w for w in snapshot.workers if w.revision != rev and w.worker_id not in taken]
    new = [w for w in snapshot.workers if w.revision == rev and w.worker_id not in taken]
    old_ready = sorted(
        (w for w in old if w.state is WorkerPhase.READY), key=lambda w: (w.cur_load, w.worker_id)
    )
    new_up = [w for w in new if w.state in _UP]
    new_ready = sum(w.state is WorkerPhase.READY for w in new_up)
    drain = old_ready[: max(0, len(old_ready) - max(0, target - new_ready))]
    waking_old = sum(w.state is WorkerPhase.WAKING for w in old)
    kept_old = len(old_ready) - len(drain) + waking_old
    room = target + max_surge(target) - kept_old - len(new_up) - snapshot.launching
    wanted = target - len(new_up) - snapshot.launching
    start = max(decision.start, _fit_gpus(snapshot, min(wanted, room)))
    stop = [w for w in old if w.state in (WorkerPhase.STARTING, WorkerPhase.PARKED)]
    stop += [w for w in old if _emptied(w, snapshot.now)]
    # The policy takes drained workers back, and wakes parked ones, when it wants more
    # active: never an old one (it would undo the rollout's drain on every tick); the
    # new-revision starts above cover what it wants.
    every_old = {w.worker_id for w in snapshot.workers if w.revision != rev}
    return replace(
        decision,
        start=start,
        stop=decision.stop + tuple(w.worker_id for w in stop),
        drain=decision.drain + tuple(w.worker_id for w in drain),
        wake=tuple(i for i in decision.wake if i not in every_old),
        reason=f"{decision.reason}; rolling out revision {rev}: {len(new_up)} new in "
        f"service, {len(old_ready)} old ready, {len(drain)} to drain",
    )


def _spare_new(snapshot: ScalingSnapshot, decision: Decision) -> Decision:
    """The policy's decision without its stops, drains and parks of new-revision workers
    that have not failed. While a rollout runs, its surge puts the fleet above the
    policy's target, and the policy trims the newest workers first: the new ones, which
    the rollout would start again on the next tick, for ever. The rollout alone trims the
    fleet then, by draining old workers down to its target (which follows the policy's)."""
    spared = {
        w.worker_id
        for w in snapshot.workers
        if w.revision == snapshot.revision and w.state is not WorkerPhase.ERRORED
    }
    return replace(
        decision,
        stop=tuple(i for i in decision.stop if i not in spared),
        drain=tuple(i for i in decision.drain if i not in spared),
        park=tuple(i for i in decision.park if i not in spared),
    )


def _emptied(worker: WorkerView, now: float) -> bool:
    """A DRAINING worker with nothing left to do, drained for ``DRAIN_GRACE_S`` at least."""
    return (
        worker.state is WorkerPhase.DRAINING
        and worker.cur_load <= 0
        and worker.in_flight == 0
        and worker.sessions == 0
        and now - worker.phase_since >= DRAIN_GRACE_S
    )


def _fit_gpus(snapshot: ScalingSnapshot, starts: int) -> int:
    """``starts``, no more than the free GPUs fit (and never below 0)."""
    starts = max(0, starts)
    if snapshot.free_gpus is None or snapshot.gpus_per_worker <= 0:
        return starts
    return min(starts, snapshot.free_gpus // snapshot.gpus_per_worker)


def rollout_status(state: RolloutState, revision: int, workers: list[WorkerView]) -> dict[str, Any]:
    """What ``vespid endpoint update --wait`` shows: ``state`` (``done``, ``rolling`` or
    ``halted``), why it halted, and the workers by revision and phase."""
    by_revision: dict[int, Counter[str]] = {}
    for w in workers:
        by_revision.setdefault(w.revision, Counter())[w.state.value] += 1
    rolled = state.revision == revision
    if rolled and state.halted:
        phase = "halted"
    elif rolled and state.done:
        phase = "done"
    else:
        phase = "rolling"
    return {
        "revision": revision,
        "good_revision": state.good_revision or None,
        "state": phase,
        "halted": state.halted if rolled else "",
        "workers": {str(r): dict(sorted(c.items())) for r, c in sorted(by_revision.items())},
    }
