"""The examples run as their READMEs say: each one's own server and client, a worker between."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp
import pytest

from examples.comfyui.client import make_image
from examples.custom.benchmark import benchmark as embed_benchmark
from examples.custom.embed_server import build_app as embed_app
from examples.openai.client import complete
from examples.tgi import client as tgi_client
from tests.support.servers import start_app
from tests.worker.conftest import MakeWorker, envelope
from vespid.benchmarks.comfyui import image_ops_workflow, image_workload
from vespid.servers.process import ChildProcess, free_port
from vespid.testing.comfyui import ComfyUIStandIn
from vespid.testing.tgi import TGIStandIn

pytestmark = pytest.mark.filterwarnings(
    "ignore::pydantic.warnings.PydanticDeprecatedSince20"  # text-generation 0.7 uses .dict()
)
DEV_AUTH = {
    "cost": 3,
    "endpoint": "/embed",
    "reqnum": 0,
    "request_idx": 0,
    "signature": "",
    "url": "",
}


async def _wait_worker_ready(port: int, proc: ChildProcess, timeout_s: float = 30) -> None:
    async with aiohttp.ClientSession() as http, asyncio.timeout(timeout_s):
        while True:
            assert proc.returncode is None, f"the worker exited with {proc.returncode}"
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    if b"vespid_worker_ready 1.0" in await resp.read():
                        return
            await asyncio.sleep(0.05)


async def test_hello_world_example(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    model_port, worker_port = free_port(), free_port()
    model_log = tmp_path / "model.log"
    model = ChildProcess.python(
        "hello_world model",
        "-m",
        "examples.hello_world.model_server",
        "--port",
        str(model_port),
        "--log",
        str(model_log),
        "--token-ms",
        "0.2",
        "--slots",
        "2",
    )
    worker = ChildProcess.python(
        "hello_world worker",
        "-m",
        "examples.hello_world.server",
        env={
            "MODEL_SERVER_URL": f"http://127.0.0.1:{model_port}",
            "MODEL_LOG": str(model_log),
            "UNSECURED": "true",
            "VESPID_HOST": "127.0.0.1",
            "WORKER_PORT": str(worker_port),
            "WORKER_HTTP_PORT": "0",
            "VESPID_CACHE_DIR": str(tmp_path / "cache"),
        },
        log_path=tmp_path / "worker.log",
    )
    try:
        await worker.start()  # before the model: it waits for "server has started"
        await model.start()
        await _wait_worker_ready(worker_port, worker)
        url = f"http://127.0.0.1:{worker_port}"
        auth = {**DEV_AUTH, "endpoint": "/generate"}
        payload = {"prompt": "hello there", "max_response_tokens": 5}
        async with http.post(url + "/generate", json=envelope(auth, payload)) as resp:
            assert resp.status == 200
            assert len((await resp.json())["response"].split()) == 5
        async with http.post(url + "/generate_stream", json=envelope(auth, payload)) as resp:
            assert resp.content_type == "text/event-stream"
            assert len((await resp.read()).split()) == 5
        async with http.post(url + "/generate", json=envelope(auth, {"prompt": 1})) as resp:
            assert resp.status == 422
        async with http.get(url + "/ping") as resp:
            assert await resp.text() == "pong"
        async with http.get(url + "/healthcheck") as resp:
            assert resp.status == 200
    finally:
        await worker.stop()
        await model.stop()
    log = await asyncio.to_thread((tmp_path / "worker.log").read_text)
    assert "Benchmark complete:" in log
    assert "model log says loaded" in log


async def test_openai_example(make_worker: MakeWorker, llama_url: str) -> None:
    worker = await make_worker(
        BACKEND_URL=llama_url, UNSECURED="true", BENCHMARK="tests.support.bench_funcs:openai_small"
    )
    pieces = await complete(worker.url, "Once upon a time", max_tokens=6)
    assert len([p for p in pieces if p]) == 6
    assert worker.worker.metrics.workload_served._value.get() == 6


async def test_tgi_example(make_worker: MakeWorker, tgi: tuple[TGIStandIn, str]) -> None:
    worker = await make_worker(
        BACKEND_URL=tgi[1],
        UNSECURED="true",
        VESPID_RAW_REQUESTS="true",
        VESPID_HANDLERS="vespid.handlers.tgi:handlers",
        BENCHMARK="vespid.benchmarks.tgi:benchmark",
    )
    text = await asyncio.to_thread(tgi_client.generate, worker.url, "Hello", 6)
    pieces = await asyncio.to_thread(tgi_client.stream, worker.url, "Hello", 6)
    assert text == "".join(pieces)


@pytest.mark.parametrize("wait", [True, False], ids=["prompt-wait", "poll-history"])
async def test_comfyui_example(
    make_worker: MakeWorker, comfy: tuple[ComfyUIStandIn, str], wait: bool
) -> None:
    worker = await make_worker(
        BACKEND_URL=comfy[1],
        UNSECURED="true",
        ALLOW_PARALLEL="false",
        HEALTHCHECK_ENDPOINT="/system_stats",
        BENCHMARK="tests.support.bench_funcs:comfy_small",
        VESPID_HANDLERS="vespid.handlers.comfyui:handler",
    )
    workload = image_workload(64, 32, 2)
    data = await make_image(worker.url, image_ops_workflow(64, 32, 2, seed=1), workload, wait=wait)
    assert data.startswith(b"\x89PNG")
    assert worker.worker.metrics.workload_served._value.get() == workload


async def test_custom_example(make_worker: MakeWorker, http: aiohttp.ClientSession) -> None:
    async with start_app(embed_app()) as url:
        worker = await make_worker(
            BACKEND_URL=url,
            UNSECURED="true",
            HEALTHCHECK_ENDPOINT="/health",
            BENCHMARK="examples.custom.benchmark:benchmark",
        )
        assert worker.worker.lifecycle.max_perf
        payload = {"texts": ["one two three"]}
        async with http.post(worker.url + "/embed", json=envelope(DEV_AUTH, payload)) as resp:
            body = await resp.json()
        assert body["tokens"] == 3
        assert len(body["embeddings"][0]) == 8
        async with aiohttp.ClientSession() as session:
            assert await embed_benchmark(url, session) > 0
