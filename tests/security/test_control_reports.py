"""Finding 3: a worker's report speaks for that worker only, and a report's numbers are
finite and in range (422, never 500).

Each worker the control plane starts gets its own ``MASTER_TOKEN``, derived from the
report secret and its id; the control plane accepts a report only with the token of the
id it names. Here worker 1 is real (a null worker) and the attacker holds its token.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.control.attack import NULL_ENDPOINT
from tests.control.conftest import MakeControl, admin
from tests.support.waiting import wait_until
from vespid.control.app import ControlPlane
from vespid.control.policy import WorkerPhase

BAD_FIELDS: list[tuple[str, Any]] = [
    ("cur_load", -1e12), ("cur_load", 1e300), ("cur_load", "inf"), ("cur_load", []),
    ("max_perf", "inf"), ("max_perf", "NaN"), ("max_perf", -1), ("max_perf", {"a": 1}),
    ("new_load", 1e16), ("rej_load", -0.5), ("loadtime", "x"), ("num_requests_working", -3),
    ("num_sessions", 1.5), ("num_requests_working", "many"), ("error_msg", {"x": 1}),
    ("working_request_idxs", "1,2"), ("url", 7), ("disk_usage", -1),
]  # fmt: skip


async def _post(session: aiohttp.ClientSession, control: ControlPlane, path: str,
                body: Any) -> tuple[int, Any]:  # fmt: skip
    async with session.post(control.url + path, json=body) as resp:
        assert resp.content_type == "application/json"
        return resp.status, await resp.json()


async def _one_ready_worker(session: aiohttp.ClientSession, control: ControlPlane) -> int:
    _, ep = await admin(
        session, control, "POST", "/api/v0/endpoints", {"name": "e", **NULL_ENDPOINT}
    )
    body = {"endpoint": "e", "api_key": ep["api_key"], "cost": 1}
    async with session.post(control.url + "/route/", json=body) as resp:
        assert resp.status == 200
    await wait_until(lambda: any(w.phase is WorkerPhase.READY
                                 for w in control.fleet.workers.values()), 30)  # fmt: skip
    [worker_id] = control.fleet.workers
    return worker_id


async def test_a_report_speaks_for_its_own_worker_only(
    make_control: MakeControl,
    http: aiohttp.ClientSession,
) -> None:
    control = await make_control(route_hold_s=0)
    victim = await _one_ready_worker(http, control)
    other = victim + 1  # another worker's token (an attacker's own worker)
    forged = {"id": victim, "mtoken": control.keys.worker_token(other), "cur_load": 0,
              "error_msg": "stop me"}  # fmt: skip
    for token in (control.keys.worker_token(other), "", None, 12, "x" * 10_000):
        status, err = await _post(http, control, "/worker_status/", {**forged, "mtoken": token})
        assert (status, err["code"]) == (401, "unauthorized"), token
    status, _ = await _post(http, control, "/delete_requests/", {
        "worker_id": victim, "mtoken": control.keys.worker_token(other),
        "requests": [{"request_idx": 1, "success": False}],
    })  # fmt: skip
    assert status == 401
    assert control.fleet.workers[victim].phase is WorkerPhase.READY  # not stopped
    assert control.fleet.workers[victim].error_msg == ""


async def test_a_reports_numbers_are_finite_and_in_range(
    make_control: MakeControl,
    http: aiohttp.ClientSession,
) -> None:
    control = await make_control(route_hold_s=0)
    worker = await _one_ready_worker(http, control)
    token = control.keys.worker_token(worker)
    before = control.fleet.workers[worker].cur_load
    for field, value in BAD_FIELDS:
        status, err = await _post(http, control, "/worker_status/",
                                  {"id": worker, "mtoken": token, field: value})  # fmt: skip
        assert status == 422, (field, value, err)
        assert field in " ".join(err["fields"]), (field, err)
    for body in (
        {"id": "1", "mtoken": token},
        {"id": True, "mtoken": token},
        {"mtoken": token},
        [1, 2],
        "report",
        {"id": -1, "mtoken": token},
        {"id": 2**80, "mtoken": token},
    ):
        status, _ = await _post(http, control, "/worker_status/", body)
        assert status == 422, body
    status, _ = await _post(http, control, "/delete_requests/", {
        "worker_id": worker, "mtoken": token, "requests": [{"request_idx": "x", "success": 1.5}],
    })  # fmt: skip
    assert status == 422
    assert control.fleet.workers[worker].cur_load == before
    assert control.fleet.workers[worker].phase is WorkerPhase.READY
