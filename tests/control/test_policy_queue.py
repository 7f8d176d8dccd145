"""The queue age the demand's horizon runs on: the oldest of the router's queue and the
live workers' own queues (``policy_queue``), and how a reported age is aged."""

from __future__ import annotations

import pytest

from vespid.control.policy import ScalingConfig, ScalingSnapshot, WorkerPhase, WorkerView
from vespid.control.policy_queue import aged_wait_s, queue_age_s
from vespid.control.policy_stages import measure_demand


def worker(age_s: float, *, sessions: int = 0, state: WorkerPhase = WorkerPhase.READY,
           waiting: float = 100.0) -> WorkerView:  # fmt: skip
    return WorkerView("w", state, cur_load=waiting, max_perf=100.0, sessions=sessions,
                      waiting_load=waiting, oldest_wait_s=age_s)  # fmt: skip


@pytest.mark.parametrize(
    ("router_s", "ages", "expected"),
    [
        pytest.param(0.0, [], 0.0, id="nothing waits"),
        pytest.param(2.0, [], 2.0, id="the router's queue alone"),
        pytest.param(2.0, [7.0, 4.0], 7.0, id="a worker's queue is older"),
        pytest.param(9.0, [7.0, 4.0], 9.0, id="the router's queue is older"),
        pytest.param(-1.0, [-2.0], 0.0, id="never below 0"),
    ],
)
def test_queue_age_is_the_oldest_of_router_and_workers(
    router_s: float, ages: list[float], expected: float
) -> None:
    assert queue_age_s(router_s, [worker(a) for a in ages]) == expected


def test_a_worker_holding_sessions_counts_as_occupancy_not_as_a_queue() -> None:
    assert queue_age_s(1.0, [worker(8.0, sessions=1)]) == 1.0


@pytest.mark.parametrize(
    ("reported_s", "waiting", "since_s", "expected"),
    [
        pytest.param(3.0, 500.0, 2.0, 5.0, id="aged by the time since the report"),
        pytest.param(3.0, 0.0, 2.0, 0.0, id="nothing waiting: no age"),
        pytest.param(0.0, 500.0, 0.5, 0.5, id="just arrived at the report"),
        pytest.param(3.0, 500.0, -1.0, 3.0, id="a clock step back does not rejuvenate"),
    ],
)
def test_a_reported_age_grows_while_anything_waits(
    reported_s: float, waiting: float, since_s: float, expected: float
) -> None:
    assert aged_wait_s(reported_s, waiting, since_s) == expected


def _snapshot(*workers: WorkerView, router_s: float = 0.0) -> ScalingSnapshot:
    return ScalingSnapshot(now=0.0, params=ScalingConfig(target_queue_time=10),
                           workers=workers, oldest_wait_s=router_s)  # fmt: skip


def test_the_horizon_is_what_the_oldest_waiter_at_a_worker_has_left() -> None:
    # 100 waiting at a READY worker whose oldest request waited 6 s of a 10 s target: it
    # must drain in 4 s, so 25/s, not 10/s; the router's queue is empty.
    demand = measure_demand(_snapshot(worker(6.0)))
    assert (demand.horizon_s, demand.drain_rate) == (4.0, 25.0)
    # At a DRAINING worker it is not backlog, and its age does not shorten the horizon.
    draining = measure_demand(_snapshot(worker(6.0, state=WorkerPhase.DRAINING)))
    assert (draining.horizon_s, draining.backlog) == (10.0, 0.0)
    # Past the target, the horizon is the 1 s floor.
    assert measure_demand(_snapshot(worker(12.0), router_s=3.0)).horizon_s == 1.0
