"""Sessions through the router stand-in: open, ride, health, end; 429 at the cap; bounds."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.client.conftest import Stack
from tests.support.servers import start_app
from tests.support.waiting import wait_until
from vespid.client import SessionClosed, WorkerError, WorkerUnavailable


@pytest.fixture(autouse=True)
def vast_scheme(stack: Stack) -> None:
    """Sessions reuse the auth_data they were opened with, which Vast's url-only
    signature allows (see test_session_requests_under_the_vespid_scheme)."""
    stack.router.scheme = "vast"


@dataclass
class Receiver:
    received: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/closed", self._closed)
        return app

    async def _closed(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        return web.json_response({"ok": True})


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    r = Receiver()
    async with start_app(r.app()) as url:
        yield r, url + "/closed"


async def test_session_open_ride_health_and_end(
    stack: Stack, receiver: tuple[Receiver, str]
) -> None:
    rec, route = receiver
    proxy, proxy_url, _ = await stack.proxy(stack.first)
    stack.router.workers = [proxy_url]
    sessions = stack.first.worker.sessions.sessions
    async with stack.client() as client:
        endpoint = await client.get_endpoint("llm")
        async with endpoint.session(
            cost=50, lifetime=30, on_close_route=route, on_close_payload={"job": "j1"}
        ) as session:
            sid = session.session_id
            assert sid in sessions
            assert session.url == proxy_url
            assert session.auth_data["url"] == proxy_url
            assert time.time() < session.expiration <= time.time() + 30
            resp = await session.request("/echo", {"x": 1})
            assert orjson.loads((await resp.json())["body"]) == {"x": 1}
            assert await session.health() is True
        assert session.closed
        assert sid not in sessions
        assert await session.health() is False
        await session.close()  # idempotent: nothing more is sent
    create, ride, health, end = proxy.seen
    auth = session.auth_data
    assert (create.path, create.body) == (
        "/session/create",
        {
            "auth_data": auth,
            "session_id": None,
            "payload": {"lifetime": 30, "on_close_route": route, "on_close_payload": {"job": "j1"}},
        },
    )
    assert ride.body == {"auth_data": auth, "session_id": sid, "payload": {"x": 1}}
    assert (health.path, health.body) == (
        "/session/health",
        {"session_id": sid, "session_auth": auth},
    )
    assert (end.path, end.body) == ("/session/end", {"session_id": sid, "session_auth": auth})
    assert stack.router.route_bodies[0]["cost"] == 50
    assert len(stack.router.calls) == 1  # riding, health and end need no route
    await wait_until(lambda: rec.received == [{"job": "j1", "session_id": sid}])


async def test_a_session_ended_elsewhere_is_reported_and_closes_quietly(stack: Stack) -> None:
    manager = stack.first.worker.sessions
    async with stack.client() as client:
        endpoint = await client.get_endpoint("llm")
        async with endpoint.session() as session:
            manager.close(manager.sessions[session.session_id], "expired")
            assert await session.health() is False
            with pytest.raises(SessionClosed, match="open a new session"):
                await session.request("/echo", {})
            with pytest.raises(SessionClosed):
                await session.request("/echo", {})  # known closed: not even sent
        # Leaving the block sent /session/end, answered 400 (unknown): that is fine.


async def test_a_worker_at_its_session_cap_sends_the_session_elsewhere(stack: Stack) -> None:
    capped = await stack.worker(MAX_SESSIONS="1")
    stack.router.plan = deque([capped.url, capped.url, stack.first.url])
    async with stack.client() as client:
        endpoint = await client.get_endpoint("llm")
        async with endpoint.session() as first, endpoint.session() as second:
            assert first.url == capped.url
            assert second.url == stack.first.url  # 429 at the cap, then re-routed
            assert len(stack.router.calls) == 3
    assert not capped.worker.sessions.sessions
    assert not stack.first.worker.sessions.sessions


async def test_sessions_full_everywhere_is_bounded(stack: Stack) -> None:
    capped = await stack.worker(MAX_SESSIONS="1")
    stack.router.workers = [capped.url]
    async with stack.client(max_attempts=2) as client:
        endpoint = await client.get_endpoint("llm")
        async with endpoint.session():
            with pytest.raises(WorkerError) as caught:
                await endpoint.session().open()
    assert (caught.value.status, caught.value.attempts) == (429, 2)
    assert len(stack.router.calls) == 3


async def test_a_session_whose_worker_is_gone_is_not_rerouted(stack: Stack) -> None:
    _, proxy_url, stop = await stack.proxy(stack.first)
    stack.router.workers = [proxy_url]
    async with stack.client() as client:
        endpoint = await client.get_endpoint("llm")
        async with endpoint.session() as session:
            await stop()  # the worker's address stops answering
            with pytest.raises(WorkerUnavailable, match="not re-routed"):
                await session.request("/echo", {})
            assert await session.health() is False
    assert len(stack.router.calls) == 1


async def test_session_requests_under_the_vespid_scheme(stack: Stack) -> None:
    stack.router.scheme = "vespid"
    async with stack.client() as client:
        endpoint = await client.get_endpoint("llm")
        async with endpoint.session() as session:
            resp = await session.request("/echo", {"x": 1})
            assert resp.status == 200
