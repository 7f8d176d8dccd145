"""The cold-path bodies: what a worker sends is what the control plane accepts, unknown
fields pass, and numbers that would poison the autoscaler's sums are refused by name."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import ValidationError

from vespid.errors import RequestInvalid
from vespid.protocol.wire import DeleteRequestsReport, RouteRequest, WorkerStatusReport

STATUS = {"id": 3, "mtoken": "tok", "cur_load": 12.5, "max_perf": 50.0, "num_sessions": 1}


def test_a_status_report_round_trips_with_the_protocols_spelling() -> None:
    report = WorkerStatusReport.model_validate(STATUS)
    body = report.model_dump(mode="json")
    assert "num_requests_recieved" in body  # the protocol's misspelling stays
    assert WorkerStatusReport.model_validate(body) == report


def test_unknown_fields_are_ignored() -> None:
    """Vast's PyWorker and client send fields vespid does not read."""
    report = WorkerStatusReport.model_validate({**STATUS, "gpu_utilization": 0.5})
    assert report.cur_load == 12.5
    route = RouteRequest.model_validate({"endpoint": "llm", "cost": 3, "replay_timeout": 60.0})
    assert (route.cost, route.request_idx) == (3.0, None)


@pytest.mark.parametrize(
    ("model", "body", "field"),
    [
        pytest.param(WorkerStatusReport, {**STATUS, "cur_load": math.inf}, "cur_load", id="inf"),
        pytest.param(WorkerStatusReport, {**STATUS, "max_perf": math.nan}, "max_perf", id="nan"),
        pytest.param(WorkerStatusReport, {"mtoken": "tok"}, "id", id="no-id"),
        pytest.param(WorkerStatusReport, {**STATUS, "id": True}, "id", id="bool-id"),
        pytest.param(RouteRequest, {"endpoint": "e", "cost": "x"}, "cost", id="cost-string"),
        pytest.param(RouteRequest, {"endpoint": "e", "cost": -1}, "cost", id="cost-negative"),
        pytest.param(RouteRequest, {"endpoint": "e", "cost": True}, "cost", id="cost-bool"),
        pytest.param(RouteRequest, {"endpoint": "e", "cost": math.inf}, "cost", id="cost-inf"),
        pytest.param(RouteRequest, {"cost": 1}, "endpoint", id="no-endpoint"),
        pytest.param(RouteRequest, {"endpoint": "e", "request_idx": 1.5}, "request_idx",
                     id="request-idx-fraction"),
        pytest.param(DeleteRequestsReport, {"worker_id": 1, "mtoken": "t",
                                            "requests": [{"request_idx": 1}]},
                     "requests.0.success", id="finished-without-success"),
    ],
)  # fmt: skip
def test_bad_fields_are_refused_by_name(model: Any, body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate(body)
    error = RequestInvalid.from_validation(info.value, "body")
    assert field in error.extra["fields"]


def test_finished_requests_keep_what_the_worker_sent() -> None:
    entry = {"request_idx": 7, "success": True, "status": 200, "entered_queue_at": 1.0,
             "work_started_at": 1.5, "work_completed_at": 2.0}  # fmt: skip
    report = DeleteRequestsReport(worker_id=1, mtoken="t", requests=[entry])
    assert report.model_dump(mode="json")["requests"] == [entry]
