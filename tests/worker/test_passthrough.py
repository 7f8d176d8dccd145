"""Passthrough against a real llama.cpp server and scripted stand-ins."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp_sse_client2 import client as sse_client

from tests.support.servers import Autoscaler, ScriptedBackend
from tests.worker.conftest import MakeWorker, RunningWorker, envelope


def auth(scaler: Autoscaler, worker: RunningWorker, cost: float = 10) -> dict[str, Any]:
    return scaler.sign_for(worker.url, cost)


@pytest.fixture
async def llama_worker(
    make_worker: MakeWorker, autoscaler: tuple[Autoscaler, str], llama_url: str
) -> tuple[Autoscaler, RunningWorker]:
    scaler, scaler_url = autoscaler
    worker = await make_worker(
        BACKEND_URL=llama_url, REPORT_ADDR=scaler_url, HEALTHCHECK_ENDPOINT="/health"
    )
    return scaler, worker


@pytest.fixture
async def scripted(
    make_signed_worker: MakeWorker,
    autoscaler: tuple[Autoscaler, str],
    backend: tuple[ScriptedBackend, str],
) -> tuple[Autoscaler, ScriptedBackend, RunningWorker]:
    """A signed worker (known throughput, no benchmark) before the scripted backend."""
    return autoscaler[0], backend[0], await make_signed_worker()


async def test_completion_through_worker_matches_llama(
    llama_worker: tuple[Autoscaler, RunningWorker], http: aiohttp.ClientSession
) -> None:
    scaler, worker = llama_worker
    payload = {"prompt": "hello world", "max_tokens": 6, "temperature": 0}
    async with http.post(
        worker.url + "/v1/completions", json=envelope(auth(scaler, worker, 6), payload)
    ) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        body = await resp.json()
    assert body["object"] == "text_completion"
    assert body["usage"]["completion_tokens"] == 6


async def test_streamed_completion_is_relayed_as_sse(
    llama_worker: tuple[Autoscaler, RunningWorker], http: aiohttp.ClientSession
) -> None:
    scaler, worker = llama_worker
    payload = {"prompt": "hello", "max_tokens": 5, "stream": True}
    events: list[str] = []
    async with sse_client.EventSource(
        worker.url + "/v1/completions",
        session=http,
        option={"method": "POST"},
        json=envelope(auth(scaler, worker, 5), payload),
    ) as source:
        async for event in source:
            events.append(event.data)
            if event.data == "[DONE]":
                break
    assert events[-1] == "[DONE]"
    assert len(events) >= 6  # 5 tokens, a final chunk with usage, then [DONE]


async def test_chat_completion_passthrough(
    llama_worker: tuple[Autoscaler, RunningWorker], http: aiohttp.ClientSession
) -> None:
    scaler, worker = llama_worker
    payload = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    async with http.post(
        worker.url + "/v1/chat/completions", json=envelope(auth(scaler, worker, 4), payload)
    ) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["object"] == "chat.completion"


async def test_backend_4xx_is_relayed_and_counted_as_client_error(
    llama_worker: tuple[Autoscaler, RunningWorker], http: aiohttp.ClientSession
) -> None:
    scaler, worker = llama_worker
    async with http.post(
        worker.url + "/v1/completions", json=envelope(auth(scaler, worker), {"max_tokens": 3})
    ) as resp:
        status = resp.status
        body = await resp.json()
    assert 400 <= status < 500  # llama.cpp refuses a completion without a prompt
    assert "error" in body
    metrics = worker.worker.metrics
    assert metrics.requests.labels(str(status), "client_error")._value.get() == 1
    assert metrics.workload_served._value.get() == 0


async def test_first_chunk_arrives_before_backend_finishes(
    scripted: tuple[Autoscaler, ScriptedBackend, RunningWorker],
    http: aiohttp.ClientSession,
) -> None:
    """The backend sends one event and then waits; the client must see it meanwhile."""
    scaler, stand_in, worker = scripted
    async with http.post(worker.url + "/stream", json=envelope(auth(scaler, worker), {})) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/event-stream"
        first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 10)
        assert first == b'data: {"n": 1}\n\n'
        assert not stand_in.release.is_set()
        stand_in.release.set()
        rest = await resp.content.read()
    assert rest == b'data: {"n": 2}\n\ndata: [DONE]\n\n'


async def test_backend_dying_mid_stream_ends_client_stream_with_error(
    scripted: tuple[Autoscaler, ScriptedBackend, RunningWorker],
    http: aiohttp.ClientSession,
) -> None:
    scaler, _, worker = scripted
    async with http.post(worker.url + "/break", json=envelope(auth(scaler, worker), {})) as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.content.read()
    metrics = worker.worker.metrics
    assert metrics.requests.labels("502", "error")._value.get() == 1
    # The worker keeps serving.
    async with http.post(worker.url + "/echo", json=envelope(auth(scaler, worker), {"a": 1})) as r:
        assert r.status == 200
        assert (await r.json())["body"] == '{"a":1}'


async def test_other_methods_carry_auth_in_header(
    scripted: tuple[Autoscaler, ScriptedBackend, RunningWorker],
    http: aiohttp.ClientSession,
) -> None:
    scaler, _, worker = scripted
    import orjson

    header = {"X-Vespid-Auth": orjson.dumps(auth(scaler, worker)).decode()}
    async with http.get(worker.url + "/echo?x=1", headers=header) as resp:
        assert resp.status == 200
        assert await resp.json() == {
            "method": "GET",
            "query": {"x": "1"},
            "body": "",
            "content_type": "application/octet-stream",
        }
    async with http.put(
        worker.url + "/echo",
        data=b"raw",
        headers={
            **{"X-Vespid-Auth": orjson.dumps(auth(scaler, worker)).decode()},
            "Content-Type": "text/plain",
        },
    ) as resp:
        assert (await resp.json())["body"] == "raw"
    async with http.delete(worker.url + "/echo") as resp:
        assert resp.status == 422
        assert "X-Vespid-Auth" in (await resp.json())["error"]


async def test_backend_status_codes_are_relayed_and_accounted(
    scripted: tuple[Autoscaler, ScriptedBackend, RunningWorker],
    http: aiohttp.ClientSession,
) -> None:
    scaler, _, worker = scripted
    for code in (404, 503):
        async with http.post(
            worker.url + f"/status/{code}", json=envelope(auth(scaler, worker, 7), {})
        ) as resp:
            assert resp.status == code
            assert await resp.json() == {"error": f"status {code}"}
    metrics = worker.worker.metrics
    assert metrics.requests.labels("404", "client_error")._value.get() == 1
    assert metrics.requests.labels("503", "error")._value.get() == 1
    assert metrics.workload_served._value.get() == 0


async def test_backend_metrics_stay_reachable(
    make_worker: MakeWorker,
    backend: tuple[ScriptedBackend, str],
    http: aiohttp.ClientSession,
) -> None:
    _, backend_url = backend
    worker = await make_worker(BACKEND_URL=backend_url, UNSECURED="true", VESPID_MAX_PERF="100")
    async with http.get(worker.url + "/metrics") as resp:
        text = await resp.text()
    assert "vespid_worker_ready 1.0" in text
    async with http.get(worker.url + "/metrics/backend") as resp:
        assert await resp.text() == "backend_requests_total 7\n"
