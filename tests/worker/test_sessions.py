"""Sessions on a generic worker: every route and status code, expiry, callbacks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.support.servers import Autoscaler, ScriptedBackend, start_app
from tests.support.waiting import wait_until
from tests.worker.conftest import MakeWorker, RunningWorker, envelope
from vespid.servers.process import free_port


def signed(scaler: Autoscaler, worker: RunningWorker, cost: float = 100) -> dict[str, Any]:
    return scaler.sign_for(worker.url, cost)


@dataclass
class Receiver:
    """Receives on-close callbacks; fails the first ``fail_first`` with 503."""

    fail_first: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/closed", self._closed)
        return app

    async def _closed(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if self.attempts <= self.fail_first:
            return web.json_response({"error": "busy"}, status=503)
        self.received.append(await request.json())
        return web.json_response({"ok": True})


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    r = Receiver()
    async with start_app(r.app()) as url:
        yield r, url + "/closed"


@pytest.fixture
async def env(
    make_signed_worker: MakeWorker,
    autoscaler: tuple[Autoscaler, str],
    backend: tuple[ScriptedBackend, str],
) -> tuple[Autoscaler, ScriptedBackend, RunningWorker]:
    scaler, _ = autoscaler
    stand_in, _ = backend
    worker = await make_signed_worker(
        MAX_SESSIONS="2",
    )
    return scaler, stand_in, worker


async def create(
    http: aiohttp.ClientSession, worker: RunningWorker, auth: dict[str, Any], **payload: Any
) -> tuple[int, dict[str, Any]]:
    async with http.post(
        worker.url + "/session/create", json=envelope(auth, {"lifetime": 60, **payload})
    ) as resp:
        return resp.status, await resp.json()


async def call(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    async with http.post(url, json=body) as resp:
        return resp.status, await resp.json()


async def test_create_get_health_end(
    env: tuple[Autoscaler, ScriptedBackend, RunningWorker],
    http: aiohttp.ClientSession,
    receiver: tuple[Receiver, str],
) -> None:
    scaler, _, worker = env
    rec, route = receiver
    auth = signed(scaler, worker, cost=150)
    before = time.time()
    status, created = await create(
        http, worker, auth, on_close_route=route, on_close_payload={"job": "j1"}
    )
    assert status == 201
    assert set(created) == {"session_id", "expiration"}
    assert before + 60 <= created["expiration"] <= time.time() + 60
    sid = created["session_id"]
    assert len(sid) >= 32  # 24 random bytes, url-safe base64
    assert worker.worker.books.cur_load == 150  # a session counts as load...
    assert worker.worker.admission.workload_ahead == 0  # ...but not in the wait estimate

    ref = {"session_id": sid, "session_auth": auth}
    status, data = await call(http, worker.url + "/session/get", ref)
    assert status == 200
    assert (data["session_id"], data["auth_data"], data["lifetime"]) == (sid, auth, 60)
    assert data["on_close_payload"] == {"job": "j1"}
    assert await call(http, worker.url + "/session/health", ref) == (200, {"ok": True})

    wrong = {"session_id": sid, "session_auth": {**auth, "cost": "1"}}
    for route_name in ("get", "health", "end"):
        status, err = await call(http, worker.url + f"/session/{route_name}", wrong)
        assert (status, err["code"]) == (401, "unauthorized")

    status, ended = await call(http, worker.url + "/session/end", ref)
    assert (status, ended) == (200, {"ended": True, "removed_session": sid})
    assert worker.worker.books.cur_load == 0
    await wait_until(lambda: len(rec.received) == 1)
    assert rec.received == [{"job": "j1", "session_id": sid}]
    assert worker.worker.metrics.requests.labels("200", "success")._value.get() == 1

    gone = {"session_id": sid, "session_auth": auth}
    status, err = await call(http, worker.url + "/session/end", gone)
    assert (status, err["code"]) == (400, "bad_request")
    status, err = await call(http, worker.url + "/session/get", gone)
    assert (status, err["code"]) == (410, "session_gone")
    assert await call(http, worker.url + "/session/health", gone) == (200, {"ok": False})
    await asyncio.sleep(0.2)
    assert len(rec.received) == 1  # delivered exactly once


async def test_create_needs_a_valid_signature_and_respects_the_cap(
    env: tuple[Autoscaler, ScriptedBackend, RunningWorker], http: aiohttp.ClientSession
) -> None:
    scaler, _, worker = env
    forged = {**signed(scaler, worker), "cost": "1"}
    status, err = await create(http, worker, forged)
    assert (status, err["code"]) == (401, "bad_signature")
    assert (await create(http, worker, signed(scaler, worker)))[0] == 201
    assert (await create(http, worker, signed(scaler, worker)))[0] == 201
    status, err = await create(http, worker, signed(scaler, worker))
    assert (status, err["code"], err["max_sessions"]) == (429, "overloaded", 2)


@pytest.mark.parametrize(
    ("payload", "field_name"),
    [
        pytest.param({"lifetime": -1}, "payload.lifetime", id="negative-lifetime"),
        pytest.param({"lifetime": 10**9}, "payload.lifetime", id="lifetime-over-cap"),
        pytest.param({"on_close_route": "ftp://x/y"}, "payload.on_close_route", id="route"),
        pytest.param({"on_close_route": "http://evil.example/x"}, "payload.on_close_route",
                     id="route-host-not-allowed"),
        pytest.param({"on_close_route": "http://127.0.0.1/x",
                      "on_close_payload": {"b": "x" * 2000}},
                     "payload.on_close_payload", id="payload-too-big"),
        pytest.param({"on_close_payload": [1]}, "payload.on_close_payload",
                     id="payload-not-object"),
    ],
)  # fmt: skip
async def test_create_refuses_bad_payloads(
    make_signed_worker: MakeWorker,
    autoscaler: tuple[Autoscaler, str],
    http: aiohttp.ClientSession,
    payload: dict[str, Any],
    field_name: str,
) -> None:
    scaler, _ = autoscaler
    worker = await make_signed_worker(
        VESPID_ON_CLOSE_HOSTS="127.0.0.1,localhost",
        VESPID_MAX_ON_CLOSE_PAYLOAD_BYTES="1024",
    )
    async with http.post(
        worker.url + "/session/create", json=envelope(signed(scaler, worker), payload)
    ) as resp:
        assert resp.status == 422
        err = await resp.json()
    assert field_name in err["fields"]
    assert not worker.worker.sessions.sessions


async def test_requests_ride_a_session_and_slide_its_expiry(
    env: tuple[Autoscaler, ScriptedBackend, RunningWorker], http: aiohttp.ClientSession
) -> None:
    scaler, _, worker = env
    status, created = await create(http, worker, signed(scaler, worker))
    sid = created["session_id"]
    session = worker.worker.sessions.sessions[sid]
    session.expiration = time.time() + 5  # as if it had aged
    body = envelope(signed(scaler, worker, cost=1), {"x": 1}, session_id=sid)
    async with http.post(worker.url + "/echo", json=body) as resp:
        assert resp.status == 200
    # Pushed to now + lifetime, not by another whole lifetime on top of the old expiry.
    assert time.time() + 59 <= session.expiration <= time.time() + 60
    status, err = await call(
        http, worker.url + "/echo", envelope(signed(scaler, worker), {}, session_id="nope")
    )
    assert (status, err["code"]) == (410, "session_gone")


async def test_session_requests_are_not_shed(
    make_worker: MakeWorker,
    autoscaler: tuple[Autoscaler, str],
    backend: tuple[ScriptedBackend, str],
    http: aiohttp.ClientSession,
) -> None:
    """A session of cost 500 at 100 workload/s would be a 5 s wait if it counted."""
    scaler, scaler_url = autoscaler
    _, backend_url = backend
    worker = await make_worker(
        BACKEND_URL=backend_url, REPORT_ADDR=scaler_url, VESPID_MAX_PERF="100", MAX_WAIT_TIME="1"
    )
    assert (await create(http, worker, signed(scaler, worker, cost=500)))[0] == 201
    async with http.post(worker.url + "/echo", json=envelope(signed(scaler, worker, 1), {})) as r:
        assert r.status == 200


async def test_ending_a_session_cancels_its_requests(
    env: tuple[Autoscaler, ScriptedBackend, RunningWorker], http: aiohttp.ClientSession
) -> None:
    scaler, stand_in, worker = env
    auth = signed(scaler, worker)
    _, created = await create(http, worker, auth)
    sid = created["session_id"]
    body = envelope(signed(scaler, worker, 1), {"n": 7}, session_id=sid)
    held = asyncio.create_task(http.post(worker.url + "/hold", json=body))
    await wait_until(lambda: stand_in.arrivals == [7])
    ref = {"session_id": sid, "session_auth": auth}
    assert (await call(http, worker.url + "/session/end", ref))[0] == 200
    await wait_until(lambda: stand_in.cancelled == [7])
    with pytest.raises(aiohttp.ClientError):
        await held
    await wait_until(lambda: not worker.worker.books.working)


async def test_expired_session_is_closed_and_its_callback_retried(
    env: tuple[Autoscaler, ScriptedBackend, RunningWorker],
    http: aiohttp.ClientSession,
    receiver: tuple[Receiver, str],
) -> None:
    scaler, _, worker = env
    rec, route = receiver
    rec.fail_first = 2  # the receiver is down for a moment
    async with http.post(
        worker.url + "/session/create",
        json=envelope(signed(scaler, worker), {"lifetime": 0.5, "on_close_route": route}),
    ) as resp:
        sid = (await resp.json())["session_id"]
    await wait_until(lambda: len(rec.received) == 1, timeout_s=10)
    assert rec.received == [{"session_id": sid}]
    assert rec.attempts == 3
    assert not worker.worker.sessions.sessions


async def test_callback_to_a_dead_receiver_gives_up_without_blocking(
    env: tuple[Autoscaler, ScriptedBackend, RunningWorker], http: aiohttp.ClientSession
) -> None:
    scaler, _, worker = env
    auth = signed(scaler, worker)
    dead = f"http://127.0.0.1:{free_port()}/closed"
    _, created = await create(http, worker, auth, on_close_route=dead)
    ref = {"session_id": created["session_id"], "session_auth": auth}
    assert (await call(http, worker.url + "/session/end", ref))[0] == 200
    # Other work goes on while the callback retries in the background.
    async with http.post(worker.url + "/echo", json=envelope(signed(scaler, worker, 1), {})) as r:
        assert r.status == 200
    assert len(worker.worker.sessions._callbacks) == 1


async def test_session_end_on_the_plain_http_port(
    env: tuple[Autoscaler, ScriptedBackend, RunningWorker], http: aiohttp.ClientSession
) -> None:
    scaler, _, worker = env
    auth = signed(scaler, worker)
    _, created = await create(http, worker, auth)
    port = worker.served.http_port
    assert port is not None
    assert port != worker.port
    ref = {"session_id": created["session_id"], "session_auth": auth}
    status, ended = await call(http, f"http://127.0.0.1:{port}/session/end", ref)
    assert (status, ended["ended"]) == (200, True)
    async with http.post(f"http://127.0.0.1:{port}/echo", json={}) as resp:
        assert resp.status == 404  # only /session/end is served there


async def test_malformed_session_reference_is_422(
    env: tuple[Autoscaler, ScriptedBackend, RunningWorker], http: aiohttp.ClientSession
) -> None:
    _, _, worker = env
    async with http.post(worker.url + "/session/end", data=b"{oops") as resp:
        assert resp.status == 422
    status, err = await call(http, worker.url + "/session/get", {"session_id": 5})
    assert status == 422
    assert set(err["fields"]) == {"session_id", "session_auth"}
