"""Requests through the router stand-in to real workers: routing, polling, bodies, retries."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from contextlib import aclosing

import aiohttp
import orjson
import pytest

from tests.client.conftest import IMAGE, Stack
from tests.support.waiting import wait_until
from tests.worker.conftest import envelope
from vespid.client import (
    ClientError,
    ControlPlaneError,
    EndpointNotFound,
    RequestTimeout,
    RouteRefused,
    WorkerError,
    WorkerUnavailable,
)
from vespid.servers.process import free_port

_n = itertools.count(1000)


def dead_url() -> str:
    """A port nothing listens on: connections are refused."""
    return f"http://127.0.0.1:{free_port()}"


async def test_request_goes_through_route_and_worker(stack: Stack) -> None:
    async with stack.client() as client:
        endpoint = await client.get_endpoint("llm")
        assert endpoint.api_key == "endpoint-key"
        assert "endpoint-key" not in repr(endpoint)
        async with await endpoint.request("/echo", {"prompt": "hi"}, cost=7) as resp:
            assert (resp.status, resp.content_type) == (200, "application/json")
            echoed = await resp.json()
    assert orjson.loads(echoed["body"]) == {"prompt": "hi"}  # the payload, unchanged
    assert resp.worker_url == stack.first.url
    assert resp.attempts == 1
    [listing] = stack.router.listings
    assert listing.headers["Authorization"] == "Bearer account-key"
    [call] = stack.router.calls
    assert call.headers["Authorization"] == "Bearer endpoint-key"
    assert call.query == {"api_key": "endpoint-key"}
    assert call.body == {
        "endpoint": "llm",
        "api_key": "endpoint-key",
        "cost": 7,
        "request_idx": 0,
        "replay_timeout": 10.0,
    }


async def test_queued_request_polls_with_its_request_idx_then_is_served(stack: Stack) -> None:
    stack.router.queue_first = 3
    async with stack.client() as client:
        endpoint = client.endpoint("llm", api_key="endpoint-key")
        async with await endpoint.request("/echo", {"n": 1}) as resp:
            assert resp.status == 200
    indexes = [body["request_idx"] for body in stack.router.route_bodies]
    assert indexes == [0, 1, 1, 1]  # new, then the index the router gave, until served
    assert resp.auth_data["request_idx"] == 1


async def test_streamed_sse_arrives_as_it_is_sent(stack: Stack) -> None:
    async with stack.client() as client:
        endpoint = await client.get_endpoint("llm")
        async with await endpoint.request("/stream", {}, stream=True) as resp:
            assert (resp.status, resp.content_type) == (200, "text/event-stream")
            events = resp.iter_events()
            first = await anext(events)
            # The backend holds the rest back until released: the first event came alone.
            assert first.json() == {"n": 1}
            assert not stack.backend.release.is_set()
            stack.backend.release.set()
            rest = [event.data async for event in events]
    assert rest == ['{"n": 2}', "[DONE]"]


async def test_leaving_a_stream_early_gives_the_connection_back(stack: Stack) -> None:
    async with stack.client() as client:
        endpoint = await client.get_endpoint("llm")
        resp = await endpoint.request("/stream", {}, stream=True)
        async with resp, aclosing(resp.iter_events()) as events:
            async for event in events:
                assert event.json() == {"n": 1}
                break
    # The worker saw its client go and finished the request (no release was needed).
    await wait_until(lambda: not stack.first.worker.books.working)
    assert not stack.backend.release.is_set()


async def test_binary_body_comes_back_unchanged(stack: Stack) -> None:
    async with stack.client() as client:
        endpoint = await client.get_endpoint("llm")
        resp = await endpoint.request("/image", {"size": 256})
        assert resp.content_type == "image/png"
        assert await resp.read() == IMAGE
        assert [chunk async for chunk in resp.iter_chunks()] == [IMAGE]
        with pytest.raises(ClientError, match="not JSON"):
            await resp.json()


async def test_reroutes_when_the_first_worker_refuses_connections(stack: Stack) -> None:
    stack.router.plan = deque([dead_url()])
    async with stack.client() as client:
        endpoint = await client.get_endpoint("llm")
        resp = await endpoint.request("/echo", {})
    assert (resp.status, resp.worker_url, resp.attempts) == (200, stack.first.url, 2)
    # Each re-route is a fresh route (request_idx 0), so the router picks anew.
    assert [body["request_idx"] for body in stack.router.route_bodies] == [0, 0]


async def test_reroutes_when_a_worker_answers_429(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    busy = await stack.worker(MAX_WAIT_TIME="1")
    n = next(_n)
    auth = stack.scaler.signer.auth_data(
        url=busy.url, cost=500, endpoint="llm", reqnum=n, request_idx=n
    )
    # 500 of work at 100/s ahead: a 5 s wait estimate, over MAX_WAIT_TIME, so 429.
    held = asyncio.create_task(http.post(busy.url + "/hold", json=envelope(auth, {"n": n})))
    await wait_until(lambda: stack.backend.arrivals == [n])
    proxy, proxy_url, _ = await stack.proxy(busy)
    stack.router.plan = deque([proxy_url])
    async with stack.client() as client:
        endpoint = await client.get_endpoint("llm")
        resp = await endpoint.request("/echo", {"x": 1})
    assert (resp.worker_url, resp.attempts) == (stack.first.url, 2)
    assert [seen.path for seen in proxy.seen] == ["/echo"]  # tried there once, then moved on
    stack.backend.release.set()
    (await held).release()


async def test_attempts_are_bounded_when_no_worker_can_be_reached(stack: Stack) -> None:
    stack.router.workers = [dead_url()]
    async with stack.client(max_attempts=3) as client:
        endpoint = await client.get_endpoint("llm")
        with pytest.raises(WorkerUnavailable, match="in 3 attempt") as caught:
            await endpoint.request("/echo", {})
    assert caught.value.fields["attempts"] == 3
    assert len(stack.router.calls) == 3


async def test_a_worker_failing_everywhere_ends_in_a_worker_error(stack: Stack) -> None:
    async with stack.client(max_attempts=3) as client:
        endpoint = await client.get_endpoint("llm")
        with pytest.raises(WorkerError) as caught:
            await endpoint.request("/status/503", {})
    error = caught.value
    assert (error.status, error.attempts, error.response_body) == (
        503,
        3,
        {"error": "status 503"},
    )
    assert "gave up after 3 attempts" in str(error)
    assert len(stack.router.calls) == 3


async def test_a_final_4xx_is_not_sent_again(stack: Stack) -> None:
    async with stack.client() as client:
        endpoint = await client.get_endpoint("llm")
        with pytest.raises(WorkerError) as caught:
            await endpoint.request("/status/400", {})
    assert (caught.value.status, caught.value.attempts) == (400, 1)
    assert len(stack.router.calls) == 1


async def test_a_worker_that_does_not_answer_in_time_is_not_sent_the_request_again(
    stack: Stack,
) -> None:
    """Vast's client re-sends a timed-out request forever; here it arrives once."""
    async with stack.client(timeout_s=1.0) as client:
        endpoint = await client.get_endpoint("llm")
        with pytest.raises(RequestTimeout, match="no answer from worker"):
            await endpoint.request("/hold", {"n": 7})
    assert stack.backend.arrivals == [7]
    assert len(stack.router.calls) == 1
    await wait_until(lambda: stack.backend.cancelled == [7])


async def test_the_api_key_never_reaches_a_worker(stack: Stack) -> None:
    proxy, proxy_url, _ = await stack.proxy(stack.first)
    stack.router.workers = [proxy_url]
    # A router that echoes the key in its answer, plus a field of its own.
    stack.router.extra = {"api_key": "endpoint-key", "zone": "eu-1"}
    async with stack.client() as client:
        endpoint = await client.get_endpoint("llm")
        echoed = await (await endpoint.request("/echo", {"q": 1})).json()
    [seen] = proxy.seen
    for secret in ("endpoint-key", "account-key"):
        assert secret not in repr([seen.headers, seen.query, seen.body])
        assert secret not in orjson.dumps(echoed).decode()
    assert "Authorization" not in seen.headers
    auth = seen.body["auth_data"]
    assert auth["zone"] == "eu-1"  # extra fields of the route answer travel unchanged
    assert seen.body == {"auth_data": auth, "session_id": None, "payload": {"q": 1}}


@pytest.mark.parametrize(
    ("name", "key", "refuse_with", "status", "hint"),
    [
        pytest.param("llm", "wrong", None, 401, "check --api-key", id="wrong-key"),
        pytest.param("nope", "endpoint-key", None, 404, "check the name", id="unknown-endpoint"),
        pytest.param("llm", "endpoint-key", 429, 429, "retry later", id="router-queue-full"),
    ],
)
async def test_router_refusals_are_raised_at_once(
    stack: Stack, name: str, key: str, refuse_with: int | None, status: int, hint: str
) -> None:
    stack.router.refuse_with = refuse_with
    async with stack.client() as client:
        with pytest.raises(RouteRefused, match=hint) as caught:
            await client.endpoint(name, api_key=key).request("/echo", {})
    assert caught.value.status == status
    assert len(stack.router.calls) == 1


async def test_endpoint_lookup_errors(stack: Stack) -> None:
    async with stack.client() as client:
        with pytest.raises(EndpointNotFound, match=r"no endpoint named 'nope'.*known: llm"):
            await client.get_endpoint("nope")
    async with stack.client(api_key="wrong") as client:
        with pytest.raises(ControlPlaneError, match="refused the API key") as caught:
            await client.get_endpoint("llm")
    assert caught.value.status == 401


async def test_queued_forever_ends_at_the_deadline(stack: Stack) -> None:
    stack.router.queue_first = 10**9
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with stack.client(timeout_s=0.5) as client:
        endpoint = await client.get_endpoint("llm")
        with pytest.raises(RequestTimeout, match="waiting for a worker"):
            await endpoint.request("/echo", {})
    assert loop.time() - started < 2.0


async def test_an_unreachable_router_is_given_up_on(stack: Stack) -> None:
    async with stack.client(base_url=dead_url()) as client:
        with pytest.raises(ControlPlaneError, match="failed 3 times in a row"):
            await client.endpoint("llm", api_key="endpoint-key").request("/echo", {})
