"""The policy's issue-15 stages: Little's-law demand, the queue-age horizon, the cold pool
(reservoir mode), the wake timeout and the moves (drain, park, wake, stop, start), each a
table; then decide() serving a burst from parked workers."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from vespid.control.policy import PolicyState, ScalingConfig, WorkerPhase, WorkerView, decide
from vespid.control.policy_moves import parked_too_long, plan_moves
from vespid.control.policy_stages import cold_target, expire_waking, measure_demand
from vespid.control.policy_types import WAKE_TIMEOUT_S, ScalingSnapshot

NOW = 1000.0
PARAMS = ScalingConfig(
    target_util=1.0, max_workers=10, target_queue_time=10.0, scale_down_delay=30.0,
    reservoir_workers=0, inactivity_timeout=60.0,
)  # fmt: skip


def params(**overrides: Any) -> ScalingConfig:
    return ScalingConfig.model_validate({**PARAMS.model_dump(), **overrides})


def worker(
    worker_id: str,
    load: float = 0.0,
    phase: WorkerPhase = WorkerPhase.READY,
    *,
    waiting: float = 0.0,
    since: float = 0.0,
    started_at: float = 0.0,
) -> WorkerView:
    return WorkerView(
        worker_id, phase, cur_load=load, max_perf=100.0, in_flight=1 if load else 0,
        started_at=started_at, waiting_load=waiting, phase_since=since,
    )  # fmt: skip


def snapshot(*workers: WorkerView, **overrides: Any) -> ScalingSnapshot:
    base = ScalingSnapshot(now=NOW, params=PARAMS, workers=workers, last_activity_at=NOW)
    return replace(base, **overrides)


P, D, S = WorkerPhase.PARKED, WorkerPhase.DRAINING, WorkerPhase.STARTING


# -- demand ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "total", "horizon_s"),
    [
        # 600 running, nothing waiting: the arrival rate (50/s) is all that is asked
        pytest.param({"workers": (worker("a", 600.0),), "arrival_rate": 50.0}, 50.0, 10.0,
                     id="running-is-not-backlog"),
        # 200 of a's 600 wait for a slot, 300 queued: 50 + 500 / 10 s = 100
        pytest.param({"workers": (worker("a", 600.0, waiting=200.0),), "queued_load": 300.0,
                      "arrival_rate": 50.0}, 100.0, 10.0, id="waiting-and-queued-drain"),
        # the oldest waited 6 s of 10: 500 within the 4 s left = 125; 50 + 125 = 175
        pytest.param({"queued_load": 500.0, "oldest_wait_s": 6.0, "arrival_rate": 50.0},
                     175.0, 4.0, id="queue-age-shortens-the-horizon"),
        # past the target: never less than 1 s, 500 in full
        pytest.param({"queued_load": 500.0, "oldest_wait_s": 30.0}, 500.0, 1.0,
                     id="one-second-floor"),
        # target_queue_time 0: Vast's convention, all 600 on a counts in full
        pytest.param({"workers": (worker("a", 600.0),), "params": params(target_queue_time=0)},
                     600.0, 1.0, id="in-full-at-zero"),
        # a DRAINING worker's load is its own to serve out: not demand
        pytest.param({"workers": (worker("d", 600.0, D, waiting=600.0),)}, 0.0, 10.0,
                     id="draining-not-demand"),
    ],
)  # fmt: skip
def test_littles_law_demand(overrides: dict[str, Any], total: float, horizon_s: float) -> None:
    demand = measure_demand(snapshot(**overrides))
    assert (demand.total, demand.horizon_s) == (total, horizon_s)


# -- the cold pool and the wake timeout ------------------------------------------------


@pytest.mark.parametrize(
    ("active", "overrides", "expected"),
    [
        pytest.param(4, {"reservoir_workers": 6}, 2, id="reservoir-what-active-leaves"),
        pytest.param(0, {"reservoir_workers": 6}, 6, id="reservoir-when-idle"),
        pytest.param(8, {"reservoir_workers": 6}, 0, id="reservoir-overrun"),
        pytest.param(8, {"reservoir_workers": 6, "cold_workers": 1}, 1, id="cold-workers-floor"),
        pytest.param(0, {"reservoir_workers": 20}, 10, id="within-max-workers"),
    ],
)
def test_cold_target_reservoir(active: int, overrides: dict[str, Any], expected: int) -> None:
    assert cold_target(active, params(**overrides)) == expected


def test_a_worker_that_does_not_wake_is_errored() -> None:
    woken = NOW - WAKE_TIMEOUT_S
    on_time = snapshot(worker("w", 0.0, WorkerPhase.WAKING, since=woken))
    assert expire_waking(on_time) == (on_time, ())
    late, ids = expire_waking(replace(on_time, now=NOW + 0.5))
    assert ids == ("w",)
    assert late.workers[0].state is WorkerPhase.ERRORED
    assert not late.workers[0].failed_before_ready  # it was ready once: no start backoff
    # and the ready timeout does not apply to WAKING: woken long after it started
    decision, _ = decide(snapshot(worker("w", 0.0, WorkerPhase.WAKING, since=NOW, started_at=0.0),
                                  ready_timeout_s=60.0), PolicyState())  # fmt: skip
    assert decision.stop == decision.timed_out == ()


# -- moves ---------------------------------------------------------------------------

IDLE3 = (worker("a"), worker("b", started_at=5.0), worker("c", started_at=9.0))


@pytest.mark.parametrize(
    ("workers", "target", "cold", "expected"),
    [
        # up by 4: the DRAINING one back first, then the most recently parked, then 1 start
        pytest.param((worker("a", 50.0), worker("d", 30.0, D), worker("p1", 0.0, P, since=10.0),
                      worker("p2", 0.0, P, since=20.0)), 5, 0,
                     {"wake": ["d", "p2", "p1"], "start": 1}, id="take-back-wake-start"),
        # up by 1: the DRAINING one is enough; the parked stay (the pool wants 2)
        pytest.param((worker("a", 50.0), worker("d", 30.0, D), worker("p1", 0.0, P),
                      worker("p2", 0.0, P)), 2, 2, {"wake": ["d"]}, id="take-back-only"),
        # down by 2, pool of 1 wanted: the newest idle is parked, the next stopped
        pytest.param(IDLE3, 1, 1, {"park": ["c"], "stop": ["b"]}, id="park-before-stop"),
        # down by 2, no pool: both stopped
        pytest.param(IDLE3, 1, 0, {"stop": ["c", "b"]}, id="stop-without-pool"),
        # down by 2: the idle one goes, the busy one (least loaded first) is drained
        pytest.param((worker("a", 80.0), worker("b", 20.0), worker("c")), 1, 0,
                     {"stop": ["c"], "drain": ["b"], "busy_kept": 1}, id="busy-drained"),
        # a STARTING one goes first when the pool is full, newest first
        pytest.param((worker("a"), worker("s", 0.0, S, started_at=NOW - 5)), 1, 0,
                     {"stop": ["s"]}, id="starting-first"),
        # ... and is kept (to be parked once ready) while the pool is short
        pytest.param((worker("a"), worker("s", 0.0, S, started_at=NOW - 5)), 1, 1, {},
                     id="starting-kept-for-pool"),
        # an empty DRAINING worker: parked while the pool is short, else stopped
        pytest.param((worker("a"), worker("d", 0.0, D)), 1, 1, {"park": ["d"]},
                     id="drained-parked"),
        pytest.param((worker("a"), worker("d", 0.0, D)), 1, 0, {"stop": ["d"]},
                     id="drained-stopped"),
        # a busy DRAINING worker stays until empty
        pytest.param((worker("a"), worker("d", 10.0, D)), 1, 0, {}, id="draining-busy-stays"),
        # parked beyond the pool: the longest parked is stopped
        pytest.param((worker("a"), worker("p1", 0.0, P, since=10.0),
                      worker("p2", 0.0, P, since=20.0)),
                     1, 1, {"stop": ["p1"]}, id="surplus-parked-stopped"),
        # vespid never starts a worker only to park it: the pool fills by scale-downs
        pytest.param((worker("a"),), 1, 3, {}, id="no-start-for-pool"),
        # up by 12 with 10 at most, 1 parked: wake it, start 8 (10 - 1 - 1)
        pytest.param((worker("a"), worker("p", 0.0, P)), 13, 0, {"wake": ["p"], "start": 8},
                     id="max-workers-caps-starts"),
    ],
)  # fmt: skip
def test_plan_moves(
    workers: tuple[WorkerView, ...], target: int, cold: int, expected: dict[str, Any]
) -> None:
    moves = plan_moves(snapshot(*workers), target, cold)
    got = {"stop": moves.stop, "drain": moves.drain, "park": moves.park, "wake": moves.wake,
           "start": moves.start, "busy_kept": moves.busy_kept}  # fmt: skip
    assert got == {"stop": [], "drain": [], "park": [], "wake": [], "start": 0,
                   "busy_kept": 0, **expected}  # fmt: skip


def test_fill_pool_starts_workers_to_park_vasts_way() -> None:
    assert plan_moves(snapshot(worker("a")), 1, 3, fill_pool=True).start == 3


# -- decide ---------------------------------------------------------------------------


def test_a_burst_is_served_from_parked_workers_first() -> None:
    """Reservoir 4: one READY worker (100 running) and three parked. 500 queued would ask
    for 500 / 10 s = 50/s -> 1 worker; the oldest has waited 8 s of 10, so the 2 s left
    ask for 250/s -> 3: the two most recently parked are woken, nothing is started."""
    parked = tuple(worker(f"p{i}", 0.0, P, since=float(i)) for i in range(3))
    burst = snapshot(worker("a", 100.0), *parked, queued_load=500.0, queued_requests=5,
                     oldest_wait_s=8.0, params=params(reservoir_workers=4))  # fmt: skip
    decision, _ = decide(burst, PolicyState())
    assert (decision.target_active, decision.start) == (3, 0)
    assert decision.wake == ("p2", "p1")
    assert decision.target_cold == 1
    assert "wake 2, start 0" in decision.reason


def test_inactivity_parks_the_reservoir_and_reaches_zero_active() -> None:
    idle = snapshot(worker("a"), worker("b"), last_activity_at=NOW - 60,
                    params=params(reservoir_workers=4))  # fmt: skip
    decision, _ = decide(idle, PolicyState())
    assert (decision.target_active, decision.park, decision.stop) == (0, ("a", "b"), ())


# -- park timeout ------------------------------------------------------------------------

IDLE = NOW - 60  # last activity: PARAMS' inactivity_timeout ago, so inactive


@pytest.mark.parametrize(
    ("workers", "overrides", "expected"),
    [
        # inactive: parked 300 s is past park_timeout 300, 299 s is not
        pytest.param((worker("p1", 0.0, P, since=NOW - 300), worker("p2", 0.0, P, since=NOW - 299)),
                     {}, ["p1"], id="at-the-timeout"),
        # longest parked first
        pytest.param((worker("p2", 0.0, P, since=NOW - 400), worker("p1", 0.0, P, since=NOW - 500)),
                     {}, ["p1", "p2"], id="longest-first"),
        # park_timeout <= 0: kept for as long as the pool wants them
        pytest.param((worker("p1", 0.0, P, since=0.0),), {"park_timeout": 0}, [], id="never"),
        pytest.param((worker("p1", 0.0, P, since=0.0),), {"park_timeout": -1}, [], id="negative"),
        # an active endpoint keeps its pool for the next burst, however long parked
        pytest.param((worker("p1", 0.0, P, since=0.0),), {"last_activity_at": NOW}, [],
                     id="active-keeps-pool"),
        # work in progress: not inactive
        pytest.param((worker("a", 10.0), worker("p1", 0.0, P, since=0.0)), {}, [],
                     id="busy-keeps-pool"),
        # inactivity_timeout <= 0: never inactive, so never stopped for this
        pytest.param((worker("p1", 0.0, P, since=0.0),), {"inactivity_timeout": 0}, [],
                     id="never-inactive"),
    ],
)  # fmt: skip
def test_parked_too_long(
    workers: tuple[WorkerView, ...], overrides: dict[str, Any], expected: list[str]
) -> None:
    scaling = {"park_timeout": 300.0, "reservoir_workers": 6}
    scaling |= {
        k: overrides.pop(k) for k in ("park_timeout", "inactivity_timeout") if k in overrides
    }
    snap = snapshot(*workers, params=params(**scaling), **{"last_activity_at": IDLE, **overrides})
    assert [w.worker_id for w in parked_too_long(snap)] == expected
    moves = plan_moves(snap, 0, 6)
    assert (moves.stop, moves.expired) == (expected, len(expected))


def test_an_expired_parked_worker_is_woken_not_stopped_when_the_floor_wants_it() -> None:
    """min_load keeps one worker on an inactive endpoint: waking the parked one beats
    stopping it and starting another."""
    snap = snapshot(worker("p1", 0.0, P, since=0.0), last_activity_at=IDLE,
                    params=params(park_timeout=300.0, min_load=100.0))  # fmt: skip
    decision, _ = decide(snap, PolicyState())
    assert (decision.wake, decision.stop, decision.start) == (("p1",), (), 0)


def test_scale_to_zero_reaches_zero_workers_after_park_timeout() -> None:
    """docs/autoscaler.md's example: idle since t = 1000, inactivity_timeout 300,
    park_timeout 300, reservoir 6: both workers parked at t = 1300, stopped at t = 1600."""
    scaling = params(inactivity_timeout=300.0, park_timeout=300.0, reservoir_workers=6)
    ready = (worker("a"), worker("b"))
    at = {
        t: snapshot(*ready, now=t, last_activity_at=1000.0, params=scaling)
        for t in (1299.0, 1300.0)
    }
    assert decide(at[1299.0], PolicyState())[0].park == ()
    assert decide(at[1300.0], PolicyState())[0].park == ("a", "b")
    parked = tuple(replace(w, state=P, phase_since=1300.0) for w in ready)
    before, _ = decide(snapshot(*parked, now=1599.0, last_activity_at=1000.0, params=scaling),
                       PolicyState())  # fmt: skip
    assert before.stop == ()
    after, _ = decide(snapshot(*parked, now=1600.0, last_activity_at=1000.0, params=scaling),
                      PolicyState())  # fmt: skip
    assert (after.target_active, after.stop, after.start) == (0, ("a", "b"), 0)
    assert "2 parked past park_timeout 300 s stopped" in after.reason


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "soon"])
def test_park_timeout_refused_naming_what_to_use(value: Any) -> None:
    with pytest.raises(ValueError, match=r"(?s)park_timeout.*must be a finite number.*use 0"):
        ScalingConfig.model_validate({"park_timeout": value})
