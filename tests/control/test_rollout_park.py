"""Drain, park and wake carried out by a real control plane's autoscaler, fed decisions
directly. The worker is a small aiohttp stand-in of the worker's two routes
(``POST /vespid/park`` and ``/vespid/wake`` with the worker's MASTER_TOKEN, answers as
the contract gives them); the fleet's handling of the new report fields is tested on
the ``Fleet`` itself."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.control.conftest import MakeControl, admin
from tests.support.waiting import wait_until
from vespid.control.app import ControlPlane
from vespid.control.fleet import Fleet, WorkerRecord
from vespid.control.policy import Decision, WorkerPhase
from vespid.control.providers.base import RunState, WorkerHandle
from vespid.protocol.wire import WorkerStatusReport

WORKER_ID = 900


class SleepyWorker:
    """The worker's park and wake routes; ``refuse`` makes the next call a JSON 503."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.calls: list[str] = []
        self.refuse = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/vespid/park", self._park)
        app.router.add_post("/vespid/wake", self._wake)
        return app

    async def _park(self, request: web.Request) -> web.Response:
        return await self._answer(request, "park", parked=True)

    async def _wake(self, request: web.Request) -> web.Response:
        return await self._answer(request, "wake", parked=False)

    async def _answer(self, request: web.Request, action: str, *, parked: bool) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": "bad token"}, status=401)
        self.calls.append(action)
        if self.refuse:
            return web.json_response({"error": self.refuse}, status=503)
        return web.json_response({"parked": parked, "took_s": 0.01})


@pytest.fixture
async def plane(
    make_control: MakeControl, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[ControlPlane, SleepyWorker, WorkerRecord]]:
    control = await make_control()
    spec = {"name": "e", "scaling": {"max_workers": 1, "inactivity_timeout": 0,
                                     "scale_down_delay": 3600}}  # fmt: skip
    await admin(http, control, "POST", "/api/v0/endpoints", spec)
    worker = SleepyWorker(control.keys.worker_token(WORKER_ID))
    runner = web.AppRunner(worker.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    # The stand-in has no process for the provider to watch: it runs while the test does.
    monkeypatch.setattr(control.provider, "state", lambda handle: RunState.RUNNING)
    handle = WorkerHandle(WORKER_ID, "e", f"http://127.0.0.1:{port}", started_at=time.time())
    record = control.fleet.add(handle)
    record.phase, record.max_perf = WorkerPhase.READY, 100.0
    try:
        yield control, worker, record
    finally:
        control.fleet.remove(WORKER_ID)
        await runner.cleanup()


def decide(control: ControlPlane, **actions: tuple[str, ...]) -> None:
    decision = Decision(target_active=1, target_cold=0, stop=(), start=0, reason="test",
                        **actions)  # type: ignore[arg-type]  # fmt: skip
    endpoint = control.endpoints["e"]
    control.autoscaler._act(endpoint, decision, endpoint)


def phase_of(record: WorkerRecord) -> WorkerPhase:
    """The phase now (read through a call: mypy keeps an asserted phase narrowed)."""
    return record.phase


def actions(control: ControlPlane) -> list[str]:
    return [e["action"] for e in control.scaling_log if e["worker_id"] == WORKER_ID]


async def test_park_then_wake_through_the_worker_routes(
    plane: tuple[ControlPlane, SleepyWorker, WorkerRecord], http: aiohttp.ClientSession
) -> None:
    control, worker, record = plane
    decide(control, park=(str(WORKER_ID),))
    assert record.phase is WorkerPhase.DRAINING  # no new work while it parks
    await wait_until(lambda: record.phase is WorkerPhase.PARKED)
    assert not control.router.candidates(control.endpoints["e"])
    decide(control, wake=(str(WORKER_ID),))
    assert phase_of(record) is WorkerPhase.WAKING
    await wait_until(lambda: record.phase is WorkerPhase.READY)
    assert worker.calls == ["park", "wake"]
    assert actions(control) == ["park", "wake"]
    assert record.parked_s > 0
    async with http.get(control.url + "/metrics") as resp:
        text = await resp.text()
    assert 'vespid_control_parked_seconds_total{endpoint="e"}' in text
    assert 'vespid_control_scaling_actions_total{action="wake",endpoint="e"} 1.0' in text
    async with http.get(control.url + "/api/v0/status") as resp:
        described = (await resp.json())["endpoints"][0]["workers"][0]
    assert (described["state"], described["revision"]) == ("ready", 0)
    assert described["parked_s"] > 0


async def test_a_failed_wake_errors_the_worker_with_its_message(
    plane: tuple[ControlPlane, SleepyWorker, WorkerRecord],
) -> None:
    control, worker, record = plane
    decide(control, park=(str(WORKER_ID),))
    await wait_until(lambda: record.phase is WorkerPhase.PARKED)
    worker.refuse = "the model server did not come back"
    decide(control, wake=(str(WORKER_ID),))
    await wait_until(lambda: record.phase is not WorkerPhase.WAKING)
    assert record.phase is WorkerPhase.ERRORED
    assert "503 the model server did not come back" in record.error_msg


async def test_drain_takes_a_worker_out_of_routing_and_wake_returns_it(
    plane: tuple[ControlPlane, SleepyWorker, WorkerRecord],
) -> None:
    control, worker, record = plane
    endpoint = control.endpoints["e"]
    assert control.router.candidates(endpoint) == [record]
    decide(control, drain=(str(WORKER_ID),))
    assert record.phase is WorkerPhase.DRAINING
    assert not control.router.candidates(endpoint)
    decide(control, wake=(str(WORKER_ID),))  # a draining worker returns at once
    assert phase_of(record) is WorkerPhase.READY
    assert worker.calls == []
    assert actions(control) == ["drain", "wake"]


def report(**fields: Any) -> WorkerStatusReport:
    return WorkerStatusReport.model_validate({"id": 1, "mtoken": "", "max_perf": 10, **fields})


@pytest.mark.parametrize("phase", [WorkerPhase.DRAINING, WorkerPhase.PARKED, WorkerPhase.WAKING])
def test_reports_keep_the_phases_the_autoscaler_set(phase: WorkerPhase) -> None:
    fleet = Fleet()
    record = fleet.add(WorkerHandle(1, "e", "http://127.0.0.1:9", time.time(), revision=3))
    fleet.ingest(report())
    record.phase = phase
    fleet.ingest(report(parked=phase is WorkerPhase.PARKED, waiting_load=4, cur_load=6))
    assert record.phase is phase
    view = record.view()
    assert (view.waiting_load, view.revision, view.state) == (4, 3, phase)
    assert view.phase_since == record.phase_since
    fleet.ingest(report(error_msg="model crashed"))
    assert record.phase is WorkerPhase.ERRORED


def test_a_worker_adopted_while_parked_stays_out_of_routing() -> None:
    fleet = Fleet()
    record = fleet.add(WorkerHandle(1, "e", "http://127.0.0.1:9", time.time()))
    assert record.phase is WorkerPhase.STARTING  # as a restarted control plane adopts it
    fleet.ingest(report(parked=True))
    assert phase_of(record) is WorkerPhase.PARKED
    fleet.ingest(report())
    assert phase_of(record) is WorkerPhase.PARKED  # only a wake brings it back
