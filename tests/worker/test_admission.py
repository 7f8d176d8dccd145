"""Queueing, load shedding and client disconnects, against a backend that holds requests."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from tests.support.servers import ScriptedBackend
from tests.support.waiting import wait_until
from tests.worker.conftest import MakeWorker, RunningWorker, envelope

_idx = itertools.count(1)


def body(n: int, cost: float = 1) -> dict[str, Any]:
    i = next(_idx)
    auth = {
        "cost": cost,
        "endpoint": "e",
        "reqnum": i,
        "request_idx": i,
        "signature": "",
        "url": "",
    }
    return envelope(auth, {"n": n})


async def hold_worker(make_worker: MakeWorker, backend_url: str, **env: str) -> RunningWorker:
    return await make_worker(
        BACKEND_URL=backend_url, UNSECURED="true", VESPID_MAX_PERF="100", **env
    )


async def test_one_at_a_time_in_arrival_order(
    make_worker: MakeWorker, backend: tuple[ScriptedBackend, str], http: aiohttp.ClientSession
) -> None:
    stand_in, backend_url = backend
    worker = await hold_worker(make_worker, backend_url, ALLOW_PARALLEL="false")
    tasks = []
    books = worker.worker.books

    def working_is(k: int) -> Callable[[], bool]:
        return lambda: len(books.working) == k

    for n in range(4):  # one by one, so the arrival order is known
        tasks.append(asyncio.create_task(http.post(worker.url + "/hold", json=body(n))))
        await wait_until(working_is(n + 1))
    await wait_until(lambda: stand_in.arrivals == [0])
    assert worker.worker.admission.queue_depth == 3
    stand_in.release.set()
    responses = await asyncio.gather(*tasks)
    assert [r.status for r in responses] == [200] * 4
    for r in responses:
        r.release()
    assert stand_in.arrivals == [0, 1, 2, 3]
    assert stand_in.max_active == 1


async def test_concurrency_limit(
    make_worker: MakeWorker, backend: tuple[ScriptedBackend, str], http: aiohttp.ClientSession
) -> None:
    stand_in, backend_url = backend
    worker = await hold_worker(make_worker, backend_url, VESPID_MAX_CONCURRENCY="2")
    tasks = [asyncio.create_task(http.post(worker.url + "/hold", json=body(n))) for n in range(5)]
    await wait_until(
        lambda: len(stand_in.arrivals) == 2 and worker.worker.admission.queue_depth == 3
    )
    stand_in.release.set()
    for r in await asyncio.gather(*tasks):
        assert r.status == 200
        r.release()
    assert stand_in.max_active == 2


async def test_too_long_a_wait_is_429_at_once(
    make_worker: MakeWorker, backend: tuple[ScriptedBackend, str], http: aiohttp.ClientSession
) -> None:
    stand_in, backend_url = backend
    # max_perf 100 workload/s; 300 workload in progress -> 3 s estimated wait > 2 s.
    worker = await make_worker(
        BACKEND_URL=backend_url, UNSECURED="true", VESPID_MAX_PERF="100", MAX_WAIT_TIME="2"
    )
    first = asyncio.create_task(http.post(worker.url + "/hold", json=body(0, cost=300)))
    await wait_until(lambda: stand_in.arrivals == [0])
    async with http.post(worker.url + "/hold", json=body(1, cost=1)) as resp:
        assert resp.status == 429
        err = await resp.json()
    assert err["code"] == "overloaded"
    assert err["estimated_wait_s"] == 3.0
    assert worker.worker.books.counters.rej_load == 1
    stand_in.release.set()
    (await first).release()
    assert stand_in.arrivals == [0]


async def test_client_going_away_cancels_backend_call_and_frees_its_place(
    make_worker: MakeWorker, backend: tuple[ScriptedBackend, str]
) -> None:
    stand_in, backend_url = backend
    worker = await hold_worker(make_worker, backend_url, ALLOW_PARALLEL="false")
    w = worker.worker
    async with aiohttp.ClientSession() as doomed:
        running = asyncio.create_task(doomed.post(worker.url + "/hold", json=body(0, cost=5)))
        await wait_until(lambda: stand_in.arrivals == [0])
        queued = asyncio.create_task(doomed.post(worker.url + "/hold", json=body(1, cost=5)))
        await wait_until(lambda: w.admission.queue_depth == 1)
        running.cancel()
        queued.cancel()
    # Both clients are gone: the backend call is cancelled and the queue place freed.
    await wait_until(lambda: stand_in.cancelled == [0] and not w.books.working)
    assert w.admission.queue_depth == 0
    assert w.admission.running == 0
    assert w.admission.workload_ahead == 0
    assert w.books.counters.new_load == 0  # both cancelled: nothing left as new load
    assert w.metrics.requests.labels("499", "cancelled")._value.get() == 2
    # The single slot is free for the next client.
    stand_in.release.set()
    async with (
        aiohttp.ClientSession() as http,
        http.post(worker.url + "/hold", json=body(2)) as resp,
    ):
        assert resp.status == 200


async def test_cancelled_waiter_dropped_by_the_handover_leaves_no_trace() -> None:
    """Regression: a waiter cancelled just before the slot is handed on used to leak its
    workload (5 left in workload_ahead instead of 0) and raise ValueError."""
    from vespid.worker.admission import Admission
    from vespid.worker.books import Ticket
    from vespid.worker.metrics import WorkerMetrics

    admission = Admission(limit=1, max_wait_s=100, metrics=WorkerMetrics())
    first, second = Ticket(1, 5.0), Ticket(2, 5.0)
    await admission.enter(first)
    waiting = asyncio.create_task(admission.enter(second))
    await wait_until(lambda: admission.queue_depth == 1)
    waiting.cancel()  # cancels the waiter future...
    admission.leave(first)  # ...which the handover then finds done and drops
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert (admission.workload_ahead, admission.running, admission.queue_depth) == (0, 0, 0)
    assert admission.workload_waiting == 0


async def test_with_a_concurrency_limit_the_wait_counts_only_work_not_started() -> None:
    """Little's law, as the router estimates it: a free slot means no wait; with both of 2
    slots running 100 each at 100/s, one running request's share (1 s); a third request
    waiting adds its own cost (2 s), where the full-cost estimate read 3 s."""
    from vespid.worker.admission import Admission
    from vespid.worker.books import Ticket
    from vespid.worker.metrics import WorkerMetrics

    admission = Admission(limit=2, max_wait_s=100, metrics=WorkerMetrics())
    admission.max_perf = 100.0
    first, second, third = Ticket(1, 100.0), Ticket(2, 100.0), Ticket(3, 100.0)
    await admission.enter(first)
    assert admission.estimate_wait_s() == 0.0
    await admission.enter(second)
    assert admission.estimate_wait_s() == 1.0
    waiting = asyncio.create_task(admission.enter(third))
    await wait_until(lambda: admission.queue_depth == 1)
    assert (admission.workload_waiting, admission.estimate_wait_s()) == (100.0, 2.0)
    admission.leave(first)
    await waiting
    assert (admission.workload_waiting, admission.estimate_wait_s()) == (0.0, 1.0)
    admission.leave(second)
    admission.leave(third)
