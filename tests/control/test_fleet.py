"""The fleet's books: what it tells the policy about workers it has seen."""

from __future__ import annotations

import time

from vespid.control.fleet import STALE_AFTER_S, Fleet
from vespid.control.models import EndpointConfig, WorkerTemplate
from vespid.control.policy import WorkerPhase
from vespid.control.providers.base import WorkerHandle
from vespid.protocol.wire import REPORT_INTERVAL_S, WorkerStatusReport


def report(worker_id: int = 1, **fields: float | str) -> WorkerStatusReport:
    return WorkerStatusReport.model_validate({"id": worker_id, "mtoken": "", **fields})


def add(fleet: Fleet, worker_id: int = 1, endpoint: str = "llm") -> None:
    fleet.add(WorkerHandle(worker_id, endpoint, "http://127.0.0.1:9", started_at=time.time()))


def test_new_workers_are_assumed_to_reach_the_last_measured_throughput() -> None:
    """A worker not yet benchmarked counts at the endpoint's last measured perf (20 here),
    not the fixed guess (100) that made a slow model under-scale while it started."""
    fleet = Fleet()
    endpoint = EndpointConfig(name="llm")
    before = fleet.snapshot(endpoint, queued_load=0, queued_requests=0)
    assert before.default_perf == 100
    assert before.params is endpoint.scaling  # the policy reads the endpoint's own model
    add(fleet)
    fleet.ingest(report(max_perf=20.0, cur_load=0, num_requests_working=0))
    fleet.remove(1)  # gone (scaled to zero); the next one starts unbenchmarked
    after = fleet.snapshot(endpoint, queued_load=40, queued_requests=2)
    assert after.default_perf == 20


def test_snapshot_changes_nothing_and_noting_the_queue_is_its_own_step() -> None:
    fleet = Fleet()
    endpoint = EndpointConfig(name="llm")
    fleet.snapshot(endpoint, queued_load=100, queued_requests=1)
    assert fleet.books == {}  # a snapshot reads; it creates no books
    fleet.note_waiting("llm", 1)
    assert fleet.books["llm"].last_activity_at is not None


def test_snapshot_carries_the_template_and_the_gates_inputs() -> None:
    fleet = Fleet()
    endpoint = EndpointConfig(
        name="llm", template=WorkerTemplate(ready_timeout=60, gpus_per_worker=2)
    )
    snapshot = fleet.snapshot(endpoint, queued_load=0, queued_requests=0, free_gpus=3, launching=1)
    assert (snapshot.ready_timeout_s, snapshot.gpus_per_worker) == (60, 2)
    assert (snapshot.free_gpus, snapshot.launching, snapshot.start_failures) == (3, 1, 0)


def test_workers_that_fail_before_ready_are_counted_until_one_is_ready() -> None:
    fleet = Fleet()
    endpoint = EndpointConfig(name="llm")
    for worker_id in (1, 2):
        add(fleet, worker_id)
        fleet.mark_errored(worker_id, "process exited")
        assert (
            fleet.snapshot(endpoint, queued_load=0, queued_requests=0)
            .workers[0]
            .failed_before_ready
        )
        fleet.remove(worker_id)
    assert fleet.snapshot(endpoint, queued_load=0, queued_requests=0).start_failures == 2
    add(fleet, 3)
    fleet.ingest(report(3, max_perf=50.0))
    assert fleet.workers[3].phase is WorkerPhase.READY
    assert fleet.snapshot(endpoint, queued_load=0, queued_requests=0).start_failures == 0
    fleet.mark_errored(3, "process exited")  # it had been ready: not a failed start
    fleet.remove(3)
    assert fleet.snapshot(endpoint, queued_load=0, queued_requests=0).start_failures == 0


def test_a_worker_is_stale_after_three_report_intervals() -> None:
    assert STALE_AFTER_S == 3 * REPORT_INTERVAL_S == 30.0
    fleet = Fleet()
    add(fleet)
    fleet.ingest(report(max_perf=50.0), now=100.0)
    assert fleet.mark_stale(now=100.0 + STALE_AFTER_S) == []
    [stale] = fleet.mark_stale(now=100.25 + STALE_AFTER_S)
    assert (stale.phase, stale.error_msg) == (WorkerPhase.ERRORED, "no report for 30 s")


def test_a_workers_oldest_wait_ages_from_its_report_while_anything_waits() -> None:
    fleet = Fleet()
    add(fleet)
    record = fleet.ingest(report(max_perf=10.0, cur_load=50, waiting_load=30, waiting_age=2.0),
                          now=100.0)  # fmt: skip
    assert record is not None
    assert record.view(now=103.0).oldest_wait_s == 5.0
    fleet.ingest(report(max_perf=10.0, cur_load=20, waiting_load=0, waiting_age=0), now=104.0)
    assert record.view(now=110.0).oldest_wait_s == 0.0


def test_the_router_reads_slots_and_the_load_routed_since_the_report() -> None:
    """A worker reporting 2 slots, 1 free: the first request routed since starts (no
    wait), the second waits behind it; a report clears what was routed."""
    fleet = Fleet()
    add(fleet)
    record = fleet.ingest(report(max_perf=10.0, cur_load=50, slots=2, free_slots=1), now=100.0)
    assert record is not None
    assert record.est_wait_s() == 0.0
    record.note_routed(20.0)
    assert record.est_wait_s() == 3.5  # full: one running request's share, 70 / 2 / 10
    record.note_routed(20.0)
    view = record.view(now=100.0)
    assert (view.routed_load, view.routed_requests, view.slots) == (40.0, 2, 2)
    assert record.est_wait_s() == (20.0 + 70.0 / 2) / 10.0  # 40 × (2 − 1) / 2 waits
    fleet.ingest(report(max_perf=10.0, cur_load=90, slots=2, free_slots=0), now=101.0)
    assert (record.routed_load, record.routed_requests) == (0.0, 0)
