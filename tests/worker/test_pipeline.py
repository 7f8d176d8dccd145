"""The request pipeline on its own (``Flight``): a refusal is counted and logged once, a
request shed at admission is booked as rejected, one whose client goes away as 499, and
every admitted request gives its slot back."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from tests.support.servers import ScriptedBackend
from tests.worker.conftest import MakeWorker, RunningWorker
from vespid.errors import NotFound, Overloaded
from vespid.protocol.wire import parse_auth_data
from vespid.worker.books import Outcome
from vespid.worker.pipeline import Flight


def auth(idx: int, cost: float = 1) -> Any:
    raw = {"cost": cost, "endpoint": "e", "reqnum": idx, "request_idx": idx,
           "signature": "", "url": ""}  # fmt: skip
    return parse_auth_data(raw)


def counted(running: RunningWorker, status: str, outcome: str) -> float:
    value: float = running.worker.metrics.requests.labels(status, outcome)._value.get()
    return value


@pytest.fixture
async def running(make_worker: MakeWorker, backend: tuple[ScriptedBackend, str]) -> RunningWorker:
    _, backend_url = backend
    return await make_worker(BACKEND_URL=backend_url, UNSECURED="true", VESPID_MAX_PERF="100")


async def test_a_refusal_is_counted_and_logged_once_without_the_query(
    running: RunningWorker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vespid.request")
    with pytest.raises(NotFound):
        async with Flight(running.worker.pipeline, "POST", "/x?q=1", time.monotonic()):
            raise NotFound("nothing here")
    assert counted(running, "404", "refused") == 1
    fields = [r.__dict__["fields"] for r in caplog.records if r.name == "vespid.request"]
    assert [(f["path"], f["status"], f["outcome"], f["error"]) for f in fields] == [
        ("/x", 404, "refused", "nothing here")
    ]
    assert not running.worker.books.working


async def test_a_request_shed_at_admission_is_booked_as_rejected(running: RunningWorker) -> None:
    worker = running.worker

    async def request() -> None:
        async with Flight(worker.pipeline, "POST", "/x", time.monotonic()) as flight:
            await flight.accept(auth(1, cost=5), None)
            await flight.admit(5)

    worker.admission.workload_ahead = 1e9  # 1e9 / 100 per s: far past MAX_WAIT_TIME
    try:
        with pytest.raises(Overloaded):
            await request()
    finally:
        worker.admission.workload_ahead = 0.0
    assert counted(running, "429", Outcome.REJECTED.value) == 1
    assert worker.books.counters.rej_load == 5
    assert not worker.books.working
    assert worker.admission.running == 0


async def test_a_request_whose_client_went_away_is_booked_as_499_and_frees_its_slot(
    running: RunningWorker,
) -> None:
    worker = running.worker
    admitted = asyncio.Event()

    async def request() -> None:
        async with Flight(worker.pipeline, "POST", "/x", time.monotonic()) as flight:
            await flight.accept(auth(2), None)
            await flight.admit(1)
            admitted.set()
            await asyncio.Event().wait()  # the backend call that never ends

    task = asyncio.create_task(request())
    await asyncio.wait_for(admitted.wait(), 10)
    assert worker.admission.running == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert counted(running, "499", "cancelled") == 1
    assert worker.admission.running == 0
    assert not worker.books.working


async def test_a_relayed_answer_is_booked_by_its_status(running: RunningWorker) -> None:
    worker = running.worker
    async with Flight(worker.pipeline, "POST", "/x", time.monotonic()) as flight:
        await flight.accept(auth(3, cost=2), None)
        await flight.admit(2)
        flight.done(200)
    assert counted(running, "200", "success") == 1
    assert worker.books.counters.served_load == 2
    assert worker.admission.running == 0


async def test_the_fronts_own_paths_are_the_routes_the_app_serves(running: RunningWorker) -> None:
    worker = running.worker
    served = {
        route.resource.canonical.encode()
        for route in worker.build_app().router.routes()
        if route.resource is not None and "{" not in route.resource.canonical
    }
    assert worker.own_paths == served
    assert b"/session/create" in worker.own_paths
