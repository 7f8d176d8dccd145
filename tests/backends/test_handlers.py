"""Handlers on the worker: the real ``text-generation`` client through a worker to the TGI
stand-in, refused payloads as 422, and a PyWorker-style module run through the compat layer."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import aiohttp
import pytest
from text_generation import Client
from text_generation.errors import ValidationError

from examples.hello_world import server as hello
from examples.hello_world.model_server import build_app
from tests.support.servers import Autoscaler, start_app
from tests.worker.conftest import MakeWorker, envelope
from vespid.compat.pyworker import Backend, worker_parts, worker_settings
from vespid.protocol.wire import AUTH_HEADER
from vespid.testing.tgi import TGIStandIn
from vespid.worker.lifecycle import WorkerState
from vespid.worker.serve import running_worker

pytestmark = pytest.mark.filterwarnings(
    "ignore::pydantic.warnings.PydanticDeprecatedSince20"  # text-generation 0.7 uses .dict()
)

RAW_TGI = {
    "UNSECURED": "true",
    "VESPID_RAW_REQUESTS": "true",
    "VESPID_HANDLERS": "vespid.handlers.tgi:handlers",
    "VESPID_MAX_PERF": "1000",
}
_idx = itertools.count(5000)


def served(metrics: Any) -> float:
    value: float = metrics.workload_served._value.get()
    return value


async def test_text_generation_client_through_an_unsecured_worker(
    make_worker: MakeWorker, tgi: tuple[TGIStandIn, str]
) -> None:
    """The client posts plain TGI bodies to the worker's ``/``; the TGI handler checks
    them and books ``max_new_tokens`` as the workload."""
    stand_in, url = tgi
    worker = await make_worker(BACKEND_URL=url, **RAW_TGI)
    client = Client(worker.url)  # its default timeout, 10 s, is plenty here

    answer = await asyncio.to_thread(client.generate, "What is Deep Learning?", max_new_tokens=7)
    assert answer.details.generated_tokens == 7
    assert len(answer.details.tokens) == 7
    assert answer.details.prefill == []
    assert answer.generated_text == "".join(t.text for t in answer.details.tokens)

    def stream() -> list[Any]:
        return list(client.generate_stream("What is Deep Learning?", max_new_tokens=4))

    events = await asyncio.to_thread(stream)
    assert [e.token.text for e in events[:-1]]
    assert events[-1].details.generated_tokens == 4
    assert events[-1].generated_text == "".join(e.token.text for e in events)

    with pytest.raises(ValidationError, match="must be <= 2048"):
        await asyncio.to_thread(client.generate, "hi", max_new_tokens=4000)
    assert served(worker.worker.metrics) == 11  # 7 + 4; the refused one served nothing
    assert [r.get("stream") for r in stand_in.requests] == [False, True, False]


async def test_text_generation_client_with_signed_auth_in_the_header(
    make_worker: MakeWorker, autoscaler: tuple[Autoscaler, str], tgi: tuple[TGIStandIn, str]
) -> None:
    """On a secured worker the client sends auth_data in X-Vespid-Auth (its ``headers=``)."""
    scaler, scaler_url = autoscaler
    worker = await make_worker(
        BACKEND_URL=tgi[1],
        REPORT_ADDR=scaler_url,
        VESPID_HANDLERS="vespid.handlers.tgi:handlers",
        VESPID_MAX_PERF="1000",
    )

    def signed_client() -> Client:
        n = next(_idx)
        auth = scaler.signer.auth_data(
            url=worker.url, cost=3, endpoint="/", reqnum=n, request_idx=n
        )
        return Client(worker.url, headers={AUTH_HEADER: json.dumps(auth)})

    answer = await asyncio.to_thread(signed_client().generate, "hello", max_new_tokens=3)
    assert answer.details.generated_tokens == 3
    unsigned = Client(worker.url)
    with pytest.raises(Exception, match="auth_data"):  # 422: no envelope, no header
        await asyncio.to_thread(unsigned.generate, "hello", max_new_tokens=3)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        pytest.param({"parameters": {}}, "inputs", id="no-inputs"),
        pytest.param({"inputs": "x", "parameters": []}, "parameters", id="parameters-list"),
        pytest.param(
            {"inputs": "x", "parameters": {"max_new_tokens": -1}},
            "parameters.max_new_tokens",
            id="negative",
        ),
        pytest.param({"inputs": "x", "stream": "yes"}, "stream", id="stream-string"),
        pytest.param(["inputs"], "body", id="not-an-object"),
    ],
)
async def test_a_payload_the_handler_refuses_is_a_422_never_a_500(
    make_worker: MakeWorker,
    tgi: tuple[TGIStandIn, str],
    http: aiohttp.ClientSession,
    payload: Any,
    field: str,
) -> None:
    stand_in, url = tgi
    worker = await make_worker(BACKEND_URL=url, **RAW_TGI)
    auth = {"cost": 1, "endpoint": "e", "reqnum": 1, "request_idx": 1, "signature": "", "url": ""}
    for body in (payload, envelope(auth, payload)):  # raw, and in an envelope
        async with http.post(worker.url + "/generate", json=body) as resp:
            assert resp.status == 422
            answer = await resp.json()
        assert answer["code"] == "invalid_payload"
        assert answer["error_type"] == "validation"
        assert field in answer["fields"]
    assert stand_in.requests == []
    assert worker.worker.metrics.requests.labels("422", "refused")._value.get() == 2


async def test_pyworker_style_module_runs_on_vespid(
    make_worker: MakeWorker,
    http: aiohttp.ClientSession,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """examples/hello_world/server.py (PyWorker's walk-through, imports changed): its
    handlers parse, weigh and shape; its plain routes answer; its benchmark runs."""
    async with start_app(build_app(token_s=0.0002, slots=2)) as model_url:
        backend = Backend(
            model_server_url=model_url,
            benchmark_handler=hello.GenerateHandler(benchmark_runs=3),
            log_actions=hello.backend.log_actions,
        )
        monkeypatch.setattr(hello, "backend", backend)  # its /healthcheck uses the global
        routes = hello.routes
        env = {
            "WORKER_PORT": "0",
            "VESPID_HOST": "127.0.0.1",
            "UNSECURED": "true",
            "VESPID_CACHE_DIR": str(tmp_path),
        }
        parts = worker_parts(backend, routes)
        async with running_worker(
            worker_settings(backend, env),
            handlers=parts.handlers,
            routes=parts.routes,
            benchmark=parts.benchmark,
        ) as running:
            worker, url = running.worker, f"http://127.0.0.1:{running.port}"
            await _wait_ready(worker)
            assert worker.lifecycle.max_perf
            assert worker.lifecycle.max_perf > 0
            auth = {
                "cost": 1,
                "endpoint": "e",
                "reqnum": 1,
                "request_idx": 1,
                "signature": "",
                "url": "",
            }
            payload = {"prompt": "one two three", "max_response_tokens": 4}
            async with http.post(url + "/generate", json=envelope(auth, payload)) as resp:
                assert resp.status == 200
                assert len((await resp.json())["response"].split()) == 4
            async with http.post(url + "/generate_stream", json=envelope(auth, payload)) as r:
                assert r.content_type == "text/event-stream"
                assert len((await r.read()).split()) == 4
            assert served(worker.metrics) == 6  # count_workload: 3 prompt words, twice
            async with http.post(url + "/generate", json=envelope(auth, {"prompt": "x"})) as r:
                assert r.status == 422
                assert (await r.json())["fields"] == {"max_response_tokens": "missing parameter"}
            async with http.get(url + "/ping") as r:
                assert await r.text() == "pong"
            async with http.get(url + "/healthcheck") as r:
                assert r.status == 200
        await backend.close()


async def _wait_ready(worker: Any) -> None:
    event = asyncio.Event()
    life = worker.lifecycle
    life.on_change.append(event)
    async with asyncio.timeout(20):
        while life.state is not WorkerState.READY:
            assert life.state is not WorkerState.ERRORED, life.error_msg
            event.clear()
            await event.wait()
