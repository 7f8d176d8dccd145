"""The policy's issue-15 stages: Little's-law demand, the queue-age horizon, the cold pool
(reservoir mode), the wake timeout and the moves (drain, park, wake, stop, start), each a
table; then decide() serving a burst from parked workers."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from vespid.control.policy import PolicyState, ScalingConfig, WorkerPhase, WorkerView, decide
from vespid.control.policy_moves import plan_moves
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
