"""The null worker: sessions only, /release on 127.0.0.1, optional consumer health, soak."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from typing import Any
from unittest import mock

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from tests.support.servers import Autoscaler, ScriptedBackend
from tests.support.waiting import wait_until
from tests.worker.conftest import MakeWorker, RunningWorker, envelope
from vespid.web import error_middleware
from vespid.worker.lifecycle import WorkerState
from vespid.worker.null import build_control_app, is_loopback


def signed(scaler: Autoscaler, worker: RunningWorker, cost: float = 100) -> dict[str, Any]:
    return scaler.sign_for(worker.url, cost)


@pytest.fixture
async def null_worker(
    make_worker: MakeWorker, autoscaler: tuple[Autoscaler, str]
) -> tuple[Autoscaler, RunningWorker]:
    scaler, scaler_url = autoscaler
    worker = await make_worker(BACKEND="null", REPORT_ADDR=scaler_url, NULL_CONTROL_PORT="0")
    return scaler, worker


async def test_null_worker_is_ready_with_one_session_slot(
    null_worker: tuple[Autoscaler, RunningWorker], http: aiohttp.ClientSession
) -> None:
    scaler, worker = null_worker
    await scaler.wait_for(lambda s: any(r["loadtime"] > 0 for r in s.status_reports))
    assert worker.worker.lifecycle.max_perf == 100
    url = worker.url + "/session/create"
    async with http.post(url, json=envelope(signed(scaler, worker), {"lifetime": 60})) as r:
        assert r.status == 201
        sid = (await r.json())["session_id"]
    async with http.post(url, json=envelope(signed(scaler, worker), {"lifetime": 60})) as r:
        assert r.status == 429
    body = envelope(signed(scaler, worker, 1), {}, session_id=sid)
    async with http.post(worker.url + "/ping", json=body) as r:
        assert r.status == 200
        assert (await r.json())["session_id"] == sid
    async with http.post(worker.url + "/ping", json=envelope(signed(scaler, worker, 1), {})) as r:
        assert r.status == 404  # no model server behind a null worker
        assert "session" in (await r.json())["error"]
    await scaler.wait_for(lambda s: any(r["cur_load"] == 100 for r in s.status_reports))


async def test_release_closes_the_active_session(
    null_worker: tuple[Autoscaler, RunningWorker], http: aiohttp.ClientSession
) -> None:
    scaler, worker = null_worker
    control = f"http://127.0.0.1:{worker.served.control_port}"
    async with http.post(
        worker.url + "/session/create", json=envelope(signed(scaler, worker), {"lifetime": 60})
    ) as r:
        sid = (await r.json())["session_id"]
    async with http.post(control + "/release") as r:
        assert r.status == 422  # /release names the session it ends
        assert "session_id" in (await r.json())["error"]
    assert worker.worker.sessions.sessions
    async with http.post(control + "/release", json={"session_id": sid}) as r:
        assert await r.json() == {"released": True, "session_ids": [sid]}
    async with http.post(control + "/release", json={"session_id": sid}) as r:
        assert await r.json() == {"released": False, "reason": "no such open session"}
    async with http.get(control + "/health") as r:
        assert r.status == 200
    assert worker.worker.metrics.requests.labels("200", "success")._value.get() == 1


async def test_control_server_listens_on_loopback_only(
    null_worker: tuple[Autoscaler, RunningWorker],
) -> None:
    _, worker = null_worker
    runner = worker.served.control
    assert runner is not None
    assert [addr[0] for addr in runner.addresses] == ["127.0.0.1"]
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert not is_loopback("10.0.0.5")
    assert not is_loopback(None)
    assert not is_loopback("x")


async def test_control_server_refuses_a_peer_off_loopback_with_403(
    null_worker: tuple[Autoscaler, RunningWorker],
) -> None:
    """Checked in-process (tests talk to 127.0.0.1 only): a request whose peer is
    10.0.0.5 gets the 403 JSON answer, and no session is released."""
    _, worker = null_worker
    app = build_control_app(worker.worker.sessions, worker.worker.settings)
    transport = mock.Mock()
    transport.get_extra_info.return_value = ("10.0.0.5", 40000)
    request = make_mocked_request("POST", "/release", app=app, transport=transport)
    match = await app.router.resolve(request)
    response = await error_middleware(request, match.handler)
    assert isinstance(response, web.Response)
    assert response.status == 403
    assert response.body == orjson.dumps(
        {"error": "the control server answers local processes only", "code": "forbidden"}
    )


async def test_backend_health_url_replaces_the_stub(
    make_worker: MakeWorker, backend: tuple[ScriptedBackend, str], http: aiohttp.ClientSession
) -> None:
    stand_in, backend_url = backend
    worker = await make_worker(
        BACKEND="null",
        UNSECURED="true",
        NULL_CONTROL_PORT="0",
        BACKEND_HEALTH_URL=backend_url + "/health",
        VESPID_HEALTH_INTERVAL_S="0.05",
    )
    async with http.get(f"http://127.0.0.1:{worker.served.control_port}/health") as r:
        assert r.status == 404  # the consumer's health is what counts now
    stand_in.healthy = False  # the queue consumer crashed
    await worker.wait_state(WorkerState.ERRORED)
    assert "/health answered 503" in worker.worker.lifecycle.error_msg


async def test_soak_1000_sessions_by_20_clients_leaves_nothing_behind(
    make_worker: MakeWorker, autoscaler: tuple[Autoscaler, str]
) -> None:
    """1,000 sessions opened and ended by 20 concurrent clients. Afterwards: no session,
    no extra task, and traced memory within 512 KiB of where it started (aiohttp keeps
    fixed-size buffers), plus at most
    700 bytes for each signature the replay book must remember until it expires."""
    scaler, scaler_url = autoscaler
    worker = await make_worker(
        BACKEND="null", REPORT_ADDR=scaler_url, NULL_CONTROL_PORT="0", MAX_SESSIONS="20"
    )
    auths = [signed(scaler, worker) for _ in range(1000)]  # signed up front (RSA is slow)
    tasks_before = set(asyncio.all_tasks())
    gc.collect()
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    statuses: list[int] = []

    async def client(mine: list[dict[str, Any]]) -> None:
        async with aiohttp.ClientSession() as http:
            for auth in mine:
                body = envelope(auth, {"lifetime": 60})
                async with http.post(worker.url + "/session/create", json=body) as r:
                    statuses.append(r.status)
                    sid = (await r.json())["session_id"]
                ref = {"session_id": sid, "session_auth": auth}
                async with http.post(worker.url + "/session/end", json=ref) as r:
                    statuses.append(r.status)

    try:
        async with asyncio.timeout(120):
            await asyncio.gather(*(client(auths[i::20]) for i in range(20)))
        await worker.worker.reporter.tick()  # hand finished requests to the autoscaler
        scaler.status_reports.clear()  # the stand-in's own records are not the worker's
        scaler.delete_reports.clear()
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert statuses.count(201) == 1000
    assert statuses.count(200) == 1000
    assert not worker.worker.sessions.sessions
    assert not worker.worker.books.working
    # Short-lived tasks of the worker's own loops (a report being sent) may still be
    # finishing; none may stay.
    await wait_until(lambda: not {t for t in asyncio.all_tasks() if not t.done()} - tasks_before)
    verifier = worker.worker.router_key.verifier
    remembered = verifier.replay_book_size if verifier else 0
    assert remembered == 1000
    bound = 512 * 1024 + 700 * remembered
    assert growth < bound, f"memory grew by {growth} bytes (bound {bound})"
