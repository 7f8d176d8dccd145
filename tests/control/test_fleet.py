"""The fleet's books: what it tells the policy about workers it has seen."""

from __future__ import annotations

import time

from vespid.control.fleet import Fleet
from vespid.control.models import EndpointConfig
from vespid.control.providers.base import WorkerHandle


def test_new_workers_are_assumed_to_reach_the_last_measured_throughput() -> None:
    """A worker not yet benchmarked counts at the endpoint's last measured perf (20 here),
    not the fixed guess (100) that made a slow model under-scale while it started."""
    fleet = Fleet()
    endpoint = EndpointConfig(name="llm")
    before = fleet.snapshot(endpoint, queued_load=0, queued_requests=0)
    assert before.params.default_perf == 100
    handle = WorkerHandle(worker_id=1, endpoint="llm", url="http://w", started_at=time.time())
    fleet.add(handle)
    fleet.ingest({"id": 1, "max_perf": 20.0, "cur_load": 0, "num_requests_working": 0})
    fleet.remove(1)  # gone (scaled to zero); the next one starts unbenchmarked
    after = fleet.snapshot(endpoint, queued_load=40, queued_requests=2)
    assert after.params.default_perf == 20
