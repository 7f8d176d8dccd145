"""Table tests of ``rollout.roll``: the policy's decision adjusted for a rolling update."""

from __future__ import annotations

from dataclasses import replace

import pytest

from vespid.control.policy_types import Decision, ScalingConfig, ScalingSnapshot, WorkerPhase
from vespid.control.policy_types import WorkerView as View
from vespid.control.rollout import (
    DRAIN_GRACE_S,
    RolloutState,
    max_surge,
    roll,
    rollout_status,
)

NOW = 1000.0
R, S, D, P, E, W = (
    WorkerPhase.READY,
    WorkerPhase.STARTING,
    WorkerPhase.DRAINING,
    WorkerPhase.PARKED,
    WorkerPhase.ERRORED,
    WorkerPhase.WAKING,
)


def w(wid: str, rev: int, phase: WorkerPhase = R, load: float = 0.0, **kw: object) -> View:
    return View(wid, phase, cur_load=load, max_perf=100.0, revision=rev, **kw)  # type: ignore[arg-type]


def snap(rev: int, *workers: View, launching: int = 0, **kw: object) -> ScalingSnapshot:
    return ScalingSnapshot(
        now=NOW, params=ScalingConfig(), workers=workers, revision=rev, launching=launching,
        **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def keep(target: int, start: int = 0, stop: tuple[str, ...] = ()) -> Decision:
    return Decision(target_active=target, target_cold=0, stop=stop, start=start, reason="p")


ROLLING = RolloutState(revision=2, good_revision=1)


@pytest.mark.parametrize(
    ("snapshot", "decision", "start", "drain", "stop"),
    [
        # Two old READY, target 2, surge 1: one new starts, nothing drained yet.
        pytest.param(snap(2, w("a", 1), w("b", 1)), keep(2), 1, (), (), id="first-surge"),
        # A new one is starting: the surge is used up, nothing more starts.
        pytest.param(snap(2, w("a", 1), w("b", 1), w("c", 2, S)), keep(2), 0, (), (),
                     id="surge-used"),
        # Counted while the provider launches it, too.
        pytest.param(snap(2, w("a", 1), w("b", 1), launching=1), keep(2), 0, (), (),
                     id="launching-counts"),
        # The new one is READY: the least loaded old one drains, the next new one starts.
        pytest.param(snap(2, w("a", 1, load=5), w("b", 1, load=1), w("c", 2)), keep(2), 1,
                     ("b",), (), id="drain-as-new-ready"),
        # Two new READY: the last old one drains.
        pytest.param(snap(2, w("a", 1), w("c", 2), w("d", 2)), keep(2), 0, ("a",), (),
                     id="last-old-drains"),
        # A drained old one, empty for longer than the grace: stopped.
        pytest.param(snap(2, w("a", 1, D, phase_since=NOW - DRAIN_GRACE_S), w("c", 2),
                          w("d", 2)), keep(2), 0, (), ("a",), id="emptied-stopped"),
        # Still busy, or drained just now: kept.
        pytest.param(snap(2, w("a", 1, D, load=3, in_flight=1), w("c", 2), w("d", 2)), keep(2),
                     0, (), (), id="busy-drainer-kept"),
        pytest.param(snap(2, w("a", 1, D, phase_since=NOW), w("c", 2), w("d", 2)), keep(2), 0,
                     (), (), id="grace"),
        # Old STARTING and PARKED ones serve nothing: stopped at once.
        pytest.param(snap(2, w("a", 1), w("b", 1, S), w("p", 1, P)), keep(2), 2, (),
                     ("b", "p"), id="old-unserving-stopped"),
        # The policy's own scale-up during a rollout is honoured on the new revision.
        pytest.param(snap(2, w("a", 1)), keep(3, start=2), 3, (), (), id="policy-scale-up"),
        # Target 0 (no demand): old ones drain, nothing starts.
        pytest.param(snap(2, w("a", 1)), keep(0), 0, ("a",), (), id="scale-to-zero"),
        # A worker the policy stops already is not drained twice.
        pytest.param(snap(2, w("a", 1), w("c", 2)), keep(1, stop=("a",)), 0, (), ("a",),
                     id="policy-stop-wins"),
        # GPUs: the free ones fit no start.
        pytest.param(snap(2, w("a", 1), free_gpus=0, gpus_per_worker=1), keep(1), 0, (), (),
                     id="no-gpu"),
    ],
)  # fmt: skip
def test_rolling(
    snapshot: ScalingSnapshot,
    decision: Decision,
    start: int,
    drain: tuple[str, ...],
    stop: tuple[str, ...],
) -> None:
    step = roll(snapshot, decision, ROLLING)
    assert (step.decision.start, step.decision.drain, step.decision.stop) == (start, drain, stop)
    assert step.start_revision == 2
    assert not step.state.halted


def test_ready_never_below_target_through_a_rollout() -> None:
    """Replay a rollout of 4 workers, each started worker READY a tick later: READY
    workers never number fewer than the target, and in service at most target + surge."""
    target, state = 4, RolloutState(1, 1)
    workers = {f"o{i}": w(f"o{i}", 1) for i in range(target)}
    next_id, ticks = 0, 0
    while any(v.revision == 1 for v in workers.values()):
        ticks += 1
        assert ticks < 50
        step = roll(snap(2, *workers.values()), keep(target), state)
        state = step.state
        for wid in step.decision.stop:
            del workers[wid]
        for wid in step.decision.drain:
            workers[wid] = replace(workers[wid], state=D, phase_since=NOW - DRAIN_GRACE_S)
        for wid, v in list(workers.items()):  # last tick's starts are READY now
            if v.state is S:
                workers[wid] = replace(v, state=R)
        for _ in range(step.decision.start):
            workers[f"n{next_id}"] = w(f"n{next_id}", 2, S)
            next_id += 1
        ready = sum(v.state is R for v in workers.values())
        in_service = sum(v.state in (R, S) for v in workers.values())
        assert ready >= target
        assert in_service <= target + max_surge(target)
    assert next_id == target  # one new worker per old one
    assert roll(snap(2, *workers.values()), keep(target), state).state.done


@pytest.mark.parametrize(
    "failed",
    [
        pytest.param(w("c", 2, E, failed_before_ready=True), id="errored"),
        pytest.param(w("c", 2, S), id="timed-out"),
    ],
)
def test_a_new_worker_failing_halts_and_starts_go_to_the_good_revision(failed: View) -> None:
    snapshot = snap(2, w("a", 1), w("b", 1), failed)
    decision = replace(keep(2, start=1, stop=("c",)), timed_out=("c",) if failed.state is S else ())
    step = roll(snapshot, decision, ROLLING)
    assert step.state.halted == "worker c on revision 2 failed before it was ready"
    assert step.decision == decision  # nothing drained
    assert step.start_revision == 1
    # Halted: stays so while the revision stays, old workers untouched.
    again = roll(snap(2, w("a", 1), w("b", 1)), keep(2), step.state)
    assert again.state.halted
    assert (again.start_revision, again.decision.drain) == (1, ())
    # A new revision (an update or a rollback) resumes.
    resumed = roll(snap(3, w("a", 1), w("b", 1)), keep(2), step.state)
    assert not resumed.state.halted
    assert (resumed.start_revision, resumed.decision.start) == (3, 1)


def test_done_once_no_old_worker_lives_and_failures_then_do_not_halt() -> None:
    step = roll(snap(2, w("c", 2), w("x", 1, E)), keep(1), ROLLING)
    assert step.state.done
    assert step.state.good_revision == 2
    later = roll(snap(2, w("c", 2), w("d", 2, E, failed_before_ready=True)), keep(2), step.state)
    assert not later.state.halted  # no rollout: the policy's backoff handles it


def test_halted_without_a_known_good_revision_starts_the_one_before() -> None:
    step = roll(snap(5, w("a", 4), w("c", 5, E, failed_before_ready=True)), keep(1),
                RolloutState())  # fmt: skip
    assert step.start_revision == 4


@pytest.mark.parametrize(("target", "surge"), [(0, 1), (1, 1), (4, 1), (5, 2), (8, 2), (9, 3)])
def test_max_surge(target: int, surge: int) -> None:
    assert max_surge(target) == surge


def test_status_counts_workers_by_revision_and_phase() -> None:
    state = replace(ROLLING, halted="worker c on revision 2 failed before it was ready")
    status = rollout_status(state, 2, [w("a", 1), w("b", 1, D), w("c", 2, E)])
    assert status == {
        "revision": 2,
        "good_revision": 1,
        "state": "halted",
        "halted": "worker c on revision 2 failed before it was ready",
        "workers": {"1": {"draining": 1, "ready": 1}, "2": {"errored": 1}},
    }
    assert rollout_status(state, 3, [])["state"] == "rolling"  # a newer revision, not seen yet


def test_the_policy_never_takes_back_an_old_worker_the_rollout_drained() -> None:
    # The policy sees 2 live of the 3 it wants and takes back the drained old worker "a";
    # the rollout keeps it drained (it would be drained again next tick, for ever) and the
    # new revision's starts cover the capacity instead.
    snapshot = snap(2, w("a", 1, D, load=3, in_flight=1), w("c", 2), w("d", 2))
    wanted = replace(keep(3), wake=("a",))
    step = roll(snapshot, wanted, ROLLING)
    assert step.decision.wake == ()
    assert step.decision.start == 1


def test_the_policy_never_trims_the_surge_it_would_start_again() -> None:
    # Three old READY at max_workers 3 and the surge's new worker starting: the policy
    # stops the newest (the new one); the rollout keeps it, and starts nothing more.
    snapshot = snap(2, w("a", 1), w("b", 1), w("c", 1), w("n", 2, S))
    step = roll(snapshot, keep(3, stop=("n",)), ROLLING)
    assert step.decision.stop == ()
    assert step.decision.start == 0
    # A new worker that failed is still stopped (and halts the rollout).
    failed = snap(2, w("a", 1), w("n", 2, E, failed_before_ready=True))
    assert "n" in roll(failed, keep(1, stop=("n",)), ROLLING).decision.stop
