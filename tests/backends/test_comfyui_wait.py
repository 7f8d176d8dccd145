"""``POST /prompt/wait`` (``vespid.handlers.comfyui``) against the ComfyUI stand-in: the
request holds its place until the image exists, failures are errors, and a client that
leaves takes its run with it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
import pytest

from tests.backends.test_passthrough import auth, served
from tests.support.servers import Autoscaler
from tests.support.waiting import wait_until
from tests.worker.conftest import MakeWorker, RunningWorker, envelope
from vespid.benchmarks.comfyui import image_ops_workflow, image_workload
from vespid.testing.comfyui import ComfyUIStandIn

COST = image_workload(80, 48, 2)


@dataclass
class Setup:
    stand_in: ComfyUIStandIn
    url: str  # the stand-in's
    scaler: Autoscaler
    worker: RunningWorker


@pytest.fixture
async def setup(
    make_worker: MakeWorker,
    autoscaler: tuple[Autoscaler, str],
    comfy: tuple[ComfyUIStandIn, str],
) -> Setup:
    """A signed worker with the /prompt/wait handler before the ComfyUI stand-in."""
    scaler, scaler_url = autoscaler
    worker = await make_worker(
        BACKEND_URL=comfy[1],
        REPORT_ADDR=scaler_url,
        VESPID_MAX_PERF="1000",
        ALLOW_PARALLEL="false",
        VESPID_HANDLERS="vespid.handlers.comfyui:handler",
    )
    return Setup(comfy[0], comfy[1], scaler, worker)


async def test_answers_with_the_outputs_once_the_image_exists(
    setup: Setup, http: aiohttp.ClientSession
) -> None:
    stand_in, scaler, worker = setup.stand_in, setup.scaler, setup.worker
    stand_in.pixel_step_s = 1e-4  # about 0.8 s for this graph: long enough to look inside
    graph = image_ops_workflow(80, 48, 2, seed=0x123456)
    call = asyncio.create_task(
        http.post(
            worker.url + "/prompt/wait",
            json=envelope(auth(scaler, worker, COST), {"prompt": graph}),
        )
    )
    await wait_until(lambda: stand_in.running is not None, timeout_s=10)
    # ComfyUI is drawing: the request is in progress, its workload not yet served.
    assert worker.worker.admission.running == 1
    assert worker.worker.books.cur_load == COST
    assert served(worker) == 0
    async with await call as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    assert body["status"]["status_str"] == "success"
    assert body["prompt_id"] in stand_in.history
    image = body["outputs"]["4"]["images"][0]
    assert image["filename"] in stand_in.images
    assert served(worker) == COST
    assert worker.worker.admission.running == 0


async def test_refusals_and_failed_runs(setup: Setup, http: aiohttp.ClientSession) -> None:
    stand_in, url, scaler, worker = setup.stand_in, setup.url, setup.scaler, setup.worker
    send = worker.url + "/prompt/wait"
    async with http.post(send, json=envelope(auth(scaler, worker, 1), ["not", "a", "body"])) as r:
        assert r.status == 422
        assert (await r.json())["fields"] == {"payload": "expected an object"}
    bad_graph = {"prompt": {"1": {"class_type": "Nope", "inputs": {}}}}
    async with http.post(send, json=envelope(auth(scaler, worker, 1), bad_graph)) as r:
        assert r.status == 400  # ComfyUI's own refusal, relayed
        assert (await r.json())["error"]["type"] == "invalid_prompt"

    stand_in.pixel_step_s = 1.0  # a run that would take an hour: interrupted from outside
    graph = image_ops_workflow(80, 48, 2, seed=1)
    call = asyncio.create_task(
        http.post(send, json=envelope(auth(scaler, worker, COST), {"prompt": graph}))
    )
    await wait_until(lambda: stand_in.running is not None, timeout_s=10)
    async with http.post(url + "/interrupt") as r:
        assert r.status == 200
    async with await call as resp:
        assert resp.status == 502
        body = await resp.json()
    assert "failed: interrupted" in body["error"]
    assert served(worker) == 0
    errors = worker.worker.metrics.requests.labels("502", "error")._value.get()
    assert errors == 1


async def test_a_client_that_leaves_takes_its_run_with_it(setup: Setup) -> None:
    stand_in, scaler, worker = setup.stand_in, setup.scaler, setup.worker
    stand_in.pixel_step_s = 1.0
    graph = image_ops_workflow(80, 48, 2, seed=2)
    async with aiohttp.ClientSession() as leaving:
        call = asyncio.create_task(
            leaving.post(
                worker.url + "/prompt/wait",
                json=envelope(auth(scaler, worker, COST), {"prompt": graph}),
            )
        )
        await wait_until(lambda: stand_in.running is not None, timeout_s=10)
        prompt_id = stand_in.running.prompt_id if stand_in.running else ""
        call.cancel()  # the client goes away mid-run
    await wait_until(lambda: prompt_id in stand_in.interrupted, timeout_s=10)
    await wait_until(lambda: worker.worker.admission.running == 0, timeout_s=10)
    assert served(worker) == 0
