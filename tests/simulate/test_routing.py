"""The simulated router routes as the control plane's does: ``accepts_work`` on the wait
estimate, the shortest wait first (ties to the oldest worker), requests waiting at a full
worker for a slot, and only what no worker accepts waiting in the router's queue."""

from __future__ import annotations

import pytest

from vespid.control.policy import ScalingConfig
from vespid.simulate import Arrival, FixedPool, VespidPolicy, WorkerModel, simulate
from vespid.simulate.workers import SimFleet

# One stream a worker, 10 output tokens/s (its perf), no prefill; reports always fresh.
ONE_STREAM = WorkerModel(prefill_tps=100, decode_tps=10, decode_slowdown=0, streams=1,
                         report_s=0)  # fmt: skip


def _fleet(workers: int, max_queue_time: float) -> SimFleet:
    fleet = SimFleet(ONE_STREAM, max_queue_time)
    for _ in range(workers):
        fleet.start(0.0, ready=True)
    return fleet


def test_a_full_worker_takes_requests_within_max_queue_time() -> None:
    # After the first request the worker's estimate is 10 / 10 = 1 s: within 30 s, so the
    # second waits at the worker, not at the router.
    fleet = _fleet(1, max_queue_time=30)
    fleet.queue.extend([Arrival(0.0, 0, 10), Arrival(0.0, 0, 10)])
    fleet.dispatch(0.0)
    (worker,) = fleet.workers.values()
    assert (len(worker.streams), len(worker.waiting), len(fleet.queue)) == (1, 1, 0)
    view = fleet.view(worker, 0.0)
    assert (view.cur_load, view.waiting_load, view.in_flight) == (20.0, 10.0, 2)


def test_a_request_no_worker_accepts_waits_at_the_router() -> None:
    # 1 s of estimated wait is beyond 0.5 s: the second request stays in the router's queue.
    fleet = _fleet(1, max_queue_time=0.5)
    fleet.queue.extend([Arrival(0.0, 0, 10), Arrival(0.0, 0, 10)])
    fleet.dispatch(0.0)
    (worker,) = fleet.workers.values()
    assert (len(worker.streams), len(worker.waiting), len(fleet.queue)) == (1, 0, 1)
    assert fleet.waiting() == 1


def test_the_shortest_estimated_wait_wins_and_ties_go_to_the_oldest() -> None:
    # w1 gets A (tie at 0 s), w2 gets B (0 < 10 s); C and D go to w2, whose estimate (1 s,
    # then 2 s) stays below w1's 10 s, so they wait there although w1 frees first.
    arrivals = [Arrival(0.0, 0, 100), Arrival(0.0, 0, 10), Arrival(0.0, 0, 10),
                Arrival(0.0, 0, 10)]  # fmt: skip
    result = simulate(arrivals, ONE_STREAM, FixedPool(2), tick_s=0.5, max_queue_time=30)
    assert result.waits_s == pytest.approx([0.0, 0.0, 1.0, 2.0])
    assert result.end_s == pytest.approx(10.0)


def test_a_worker_reports_each_request_in_full_until_it_ends() -> None:
    fleet = _fleet(1, max_queue_time=30)
    fleet.queue.append(Arrival(0.0, 0, 10))
    fleet.dispatch(0.0)
    fleet.advance(0.0, 0.5)  # half its tokens generated
    (worker,) = fleet.workers.values()
    assert fleet.view(worker, 0.5).cur_load == 10.0
    fleet.advance(0.5, 1.0)
    assert fleet.view(worker, 1.0).cur_load == 0.0


def test_the_policy_sees_the_waiting_load_as_backlog() -> None:
    # A full worker with one request waiting: vespid's snapshot shows it as waiting load.
    fleet = _fleet(1, max_queue_time=30)
    fleet.queue.extend([Arrival(0.0, 0, 10), Arrival(0.0, 0, 10)])
    fleet.dispatch(0.0)
    snapshot = VespidPolicy(ScalingConfig()).snapshot(0.0, fleet)
    assert (snapshot.workers[0].waiting_load, snapshot.queued_load) == (10.0, 0.0)


def test_a_simulated_worker_reports_its_oldest_wait_as_the_real_one_does() -> None:
    # The second request waits at the worker from t = 0 (routed then). Fresh reports: at
    # t = 0.5 it has waited 0.5 s. Reports 1 s apart: the report of t = 1 says 1 s, and
    # the fleet ages it to 1.5 s at t = 1.5, as ``Fleet`` ages a real worker's.
    slow = WorkerModel(prefill_tps=100, decode_tps=1, decode_slowdown=0, streams=1, report_s=1)
    for model, at_s in ((ONE_STREAM, 0.5), (slow, 1.0), (slow, 1.5)):
        fleet = SimFleet(model, 30)
        fleet.start(0.0, ready=True)
        fleet.queue.extend([Arrival(0.0, 0, 10), Arrival(0.0, 0, 10)])
        fleet.dispatch(0.0)
        (worker,) = fleet.workers.values()
        fleet.advance(0.0, min(at_s, 1.0))
        if at_s > 1.0:
            fleet.view(worker, 1.0)  # the report of t = 1
            fleet.advance(1.0, at_s)
        snapshot = VespidPolicy(ScalingConfig()).snapshot(at_s, fleet)
        assert (snapshot.workers[0].oldest_wait_s, snapshot.oldest_wait_s) == (at_s, 0.0)
