"""Requests through a signed worker to each stand-in, in its API's own wire format:
answers and streams arrive unchanged and each request's workload is booked."""

from __future__ import annotations

import itertools
from typing import Any

import aiohttp
import orjson

from tests.support.servers import Autoscaler
from tests.support.waiting import wait_until
from tests.worker.conftest import MakeWorker, RunningWorker, envelope
from vespid.benchmarks.comfyui import image_ops_workflow, image_workload
from vespid.protocol.wire import AUTH_HEADER
from vespid.testing.comfyui import ComfyUIStandIn
from vespid.testing.ollama import OllamaStandIn
from vespid.testing.tgi import TGIStandIn

_idx = itertools.count(1000)


def auth(scaler: Autoscaler, worker: RunningWorker, cost: float) -> dict[str, Any]:
    n = next(_idx)
    return scaler.signer.auth_data(url=worker.url, cost=cost, endpoint="e", reqnum=n, request_idx=n)


async def signed_worker(
    make_worker: MakeWorker, autoscaler: tuple[Autoscaler, str], url: str
) -> tuple[Autoscaler, RunningWorker]:
    scaler, scaler_url = autoscaler
    worker = await make_worker(BACKEND_URL=url, REPORT_ADDR=scaler_url, VESPID_MAX_PERF="1000")
    return scaler, worker


def served(worker: RunningWorker) -> float:
    value: float = worker.worker.metrics.workload_served._value.get()
    return value


async def test_tgi_generate_and_sse_stream(
    make_worker: MakeWorker,
    autoscaler: tuple[Autoscaler, str],
    tgi: tuple[TGIStandIn, str],
    http: aiohttp.ClientSession,
) -> None:
    scaler, worker = await signed_worker(make_worker, autoscaler, tgi[1])
    payload = {"inputs": "What is deep learning?", "parameters": {"max_new_tokens": 5}}
    async with http.post(
        worker.url + "/generate", json=envelope(auth(scaler, worker, 5), payload)
    ) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["generated_text"].count(" ") == 5
    payload["parameters"] = {"max_new_tokens": 4, "details": True}
    async with http.post(
        worker.url + "/generate_stream", json=envelope(auth(scaler, worker, 4), payload)
    ) as resp:
        assert resp.content_type == "text/event-stream"
        raw = await resp.read()
    events = [orjson.loads(e[5:]) for e in raw.split(b"\n\n") if e.startswith(b"data:")]
    assert [e["index"] for e in events] == [1, 2, 3, 4]
    assert events[0]["generated_text"] is None
    assert events[0]["details"] is None
    assert set(events[0]["token"]) == {"id", "text", "logprob", "special"}
    assert events[-1]["details"]["generated_tokens"] == 4
    assert served(worker) == 9


async def test_tgi_refusal_is_relayed_in_tgi_shape(
    make_worker: MakeWorker,
    autoscaler: tuple[Autoscaler, str],
    tgi: tuple[TGIStandIn, str],
    http: aiohttp.ClientSession,
) -> None:
    scaler, worker = await signed_worker(make_worker, autoscaler, tgi[1])
    payload = {"inputs": "hi", "parameters": {"max_new_tokens": 5000}}
    async with http.post(
        worker.url + "/generate", json=envelope(auth(scaler, worker, 7), payload)
    ) as resp:
        assert resp.status == 422
        body = await resp.json()
    assert body["error_type"] == "validation"
    assert "must be <= 2048" in body["error"]
    assert served(worker) == 0


async def test_ollama_ndjson_stream_and_chat(
    make_worker: MakeWorker,
    autoscaler: tuple[Autoscaler, str],
    ollama: tuple[OllamaStandIn, str],
    http: aiohttp.ClientSession,
) -> None:
    scaler, worker = await signed_worker(make_worker, autoscaler, ollama[1])
    payload = {"model": "stand-in", "prompt": "Why is the sky blue?", "options": {"num_predict": 6}}
    lines: list[dict[str, Any]] = []
    async with http.post(
        worker.url + "/api/generate", json=envelope(auth(scaler, worker, 6), payload)
    ) as resp:
        assert resp.content_type == "application/x-ndjson"
        async for line in resp.content:  # one JSON object per line, as they come
            lines.append(orjson.loads(line))
    assert [line["done"] for line in lines] == [False] * 6 + [True]
    assert lines[-1]["eval_count"] == 6
    assert lines[-1]["done_reason"] == "length"
    chat = {
        "model": "stand-in",
        "messages": [{"role": "user", "content": "hello"}],
        "stream": False,
        "options": {"num_predict": 3},
    }
    async with http.post(
        worker.url + "/api/chat", json=envelope(auth(scaler, worker, 3), chat)
    ) as resp:
        body = await resp.json()
    assert body["message"]["role"] == "assistant"
    assert body["done"] is True
    async with http.post(
        worker.url + "/api/generate", json=envelope(auth(scaler, worker, 3), {"model": "nope"})
    ) as resp:
        assert resp.status == 404
        assert "not found" in (await resp.json())["error"]
    assert served(worker) == 9


async def test_comfyui_prompt_history_and_view(
    make_worker: MakeWorker,
    autoscaler: tuple[Autoscaler, str],
    comfy: tuple[ComfyUIStandIn, str],
    http: aiohttp.ClientSession,
) -> None:
    """The client's own sequence: queue, poll history (GET, auth in the header), fetch."""
    scaler, worker = await signed_worker(make_worker, autoscaler, comfy[1])
    cost = image_workload(80, 48, 2)
    graph = image_ops_workflow(80, 48, 2, seed=0x123456)
    async with http.post(
        worker.url + "/prompt", json=envelope(auth(scaler, worker, cost), {"prompt": graph})
    ) as resp:
        prompt_id = (await resp.json())["prompt_id"]
    entry: dict[str, Any] = {}

    async def poll() -> bool:
        headers = {AUTH_HEADER: orjson.dumps(auth(scaler, worker, 0)).decode()}
        async with http.get(f"{worker.url}/history/{prompt_id}", headers=headers) as resp:
            entry.update(await resp.json())
        return prompt_id in entry

    while not await poll():
        await wait_until(lambda: prompt_id in comfy[0].history)
    image = entry[prompt_id]["outputs"]["4"]["images"][0]  # SaveImage after 2 inversions
    assert entry[prompt_id]["status"]["status_str"] == "success"
    headers = {AUTH_HEADER: orjson.dumps(auth(scaler, worker, 0)).decode()}
    async with http.get(worker.url + "/view", params=image, headers=headers) as resp:
        assert resp.content_type == "image/png"
        data = await resp.read()
    assert data.startswith(b"\x89PNG")
    assert data[16:24] == (80).to_bytes(4, "big") + (48).to_bytes(4, "big")
    assert served(worker) == cost
    async with http.post(
        worker.url + "/prompt",
        json=envelope(auth(scaler, worker, 1), {"prompt": {"1": {"class_type": "Nope"}}}),
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["type"] == "invalid_prompt"
