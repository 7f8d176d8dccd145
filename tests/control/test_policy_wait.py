"""The router's wait estimate (``policy_wait.queue_time_s``): a table of cases."""

from __future__ import annotations

import pytest

from vespid.control.policy import WorkerPhase, WorkerView
from vespid.control.policy_wait import queue_time_s, routed_waiting
from vespid.protocol.wait import slot_wait_s


def worker(
    cur_load: float,
    *,
    slots: int = 0,
    free: int = 0,
    waiting: float = 0.0,
    routed: float = 0.0,
    routed_n: int = 0,
    perf: float | None = 100.0,
) -> WorkerView:
    return WorkerView("w1", WorkerPhase.READY, cur_load=cur_load, max_perf=perf, slots=slots,
                      free_slots=free, waiting_load=waiting, routed_load=routed,
                      routed_requests=routed_n)  # fmt: skip


@pytest.mark.parametrize(
    ("view", "wait_s"),
    [
        # No slots reported: every request at its full cost until it ends (as before).
        (worker(300.0), 3.0),
        (worker(300.0, perf=None), 6.0),  # not benchmarked: the default perf, 50
        # A free slot and nothing routed since: a request starts at once.
        (worker(500.0, slots=8, free=3), 0.0),
        # A full batch (8 × 100) with nothing waiting: one running request's share.
        (worker(800.0, slots=8), 1.0),
        # A full batch and 100 waiting: the waiting work, then a slot.
        (worker(900.0, slots=8, waiting=100.0), 2.0),
        # 7 running (700) and 1 slot free, then 2 × 100 routed: one starts, one waits.
        (worker(900.0, slots=8, free=1, routed=200.0, routed_n=2), (100.0 + 800.0 / 8) / 100),
        # 1 routed into the last free slot: full, nothing waits.
        (worker(800.0, slots=8, free=1, routed=100.0, routed_n=1), 1.0),
        # 2 free, 1 routed since: still a slot free.
        (worker(700.0, slots=8, free=2, routed=100.0, routed_n=1), 0.0),
        # One slot (ALLOW_PARALLEL=false): the running request, then the waiting one.
        (worker(300.0, slots=1, waiting=200.0), 3.0),
    ],
)
def test_the_wait_is_work_not_started_over_throughput(view: WorkerView, wait_s: float) -> None:
    assert queue_time_s(view, 50.0) == pytest.approx(wait_s)


@pytest.mark.parametrize(
    ("routed", "routed_n", "free", "waits"),
    [(300.0, 3, 1, 200.0), (100.0, 1, 1, 0.0), (100.0, 2, 0, 100.0), (0.0, 0, 0, 0.0)],
)
def test_load_routed_since_the_report_waits_only_beyond_the_free_slots(
    routed: float, routed_n: int, free: int, waits: float
) -> None:
    view = worker(routed, slots=8, free=free, routed=routed, routed_n=routed_n)
    assert routed_waiting(view) == pytest.approx(waits)


def test_a_full_batch_is_no_longer_read_as_a_long_wait() -> None:
    """The catch this estimate fixes: 8 streams of 200 at 237/s read as 6.75 s, over a 5 s
    routing limit, so a worker never got its eighth request."""
    full = worker(1600.0, slots=8, perf=237.0)
    assert queue_time_s(full, 237.0) == pytest.approx(200 / 237)
    assert queue_time_s(worker(1600.0, perf=237.0), 237.0) == pytest.approx(1600 / 237)


@pytest.mark.parametrize(
    ("waiting", "running", "slots", "free", "wait_s"),
    [(0.0, 500.0, 8, 3, 0.0), (0.0, 800.0, 8, 0, 1.0), (100.0, 800.0, 8, 0, 2.0),
     (50.0, 0.0, 0, 0, 0.5)],
)  # fmt: skip
def test_the_slot_arithmetic_the_worker_shares(
    waiting: float, running: float, slots: int, free: int, wait_s: float
) -> None:
    assert slot_wait_s(waiting, running, slots, free, 100.0) == pytest.approx(wait_s)
