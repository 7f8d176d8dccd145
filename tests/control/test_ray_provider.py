"""The Ray provider on a real Ray instance (started by the control plane on 127.0.0.1):
workers run as actors with real llama.cpp servers, a dead model server is noticed and
replaced, and nothing outlives its worker."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import aiohttp

from tests.control.conftest import MakeControl, admin
from tests.control.test_local_provider import order
from tests.control.test_scaling_e2e import complete, llama_endpoint
from tests.support.waiting import wait_until
from vespid.control.models import EndpointConfig, WorkerTemplate
from vespid.control.policy import WorkerPhase
from vespid.control.providers.base import RunState
from vespid.control.providers.ray import RayProvider


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_workers_run_as_ray_actors_and_are_replaced_when_they_die(
    make_control: MakeControl, http: aiohttp.ClientSession, tiny_model: Path
) -> None:
    control = await make_control(provider="ray")
    spec = llama_endpoint(tiny_model, min_load=1, max_workers=1)
    _, ep = await admin(http, control, "POST", "/api/v0/endpoints", spec)

    answer = await complete(http, control, ep["api_key"])
    assert answer["usage"]["completion_tokens"] == 4
    [first] = control.fleet.workers.values()
    assert first.handle.info["ray_actor"] == f"vespid-worker-{first.worker_id}"
    assert first.handle.info["node"] == "127.0.0.1"
    assert first.url.startswith("http://127.0.0.1:")
    model_pgid, worker_pgid = first.handle.info["pgids"]

    # The model server dies: the actor says so, the worker is stopped and replaced.
    os.killpg(model_pgid, signal.SIGKILL)

    def replaced() -> bool:
        workers = list(control.fleet.workers.values())
        return (
            len(workers) == 1
            and workers[0].worker_id != first.worker_id
            and workers[0].phase is WorkerPhase.READY
        )

    await wait_until(replaced, timeout_s=60)
    await wait_until(lambda: not group_alive(worker_pgid), timeout_s=30)
    answer = await complete(http, control, ep["api_key"])
    assert answer["usage"]["completion_tokens"] == 4

    # Deleting the endpoint stops its worker and every process of it.
    [second] = control.fleet.workers.values()
    status, _ = await admin(http, control, "DELETE", "/api/v0/endpoints/llm")
    assert status == 200
    await wait_until(lambda: not control.fleet.workers, timeout_s=30)
    pgids: list[int] = second.handle.info["pgids"]
    await wait_until(lambda: not any(group_alive(pgid) for pgid in pgids), timeout_s=30)


async def test_gpus_are_handed_out_by_ray_and_counted_free_again(tmp_path: Path) -> None:
    """On a Ray instance declaring 2 GPUs, two null workers asking for one each get GPU 0
    and GPU 1 (Ray's CUDA_VISIBLE_DEVICES, passed on to the worker); none is left free
    until one stops."""
    provider = RayProvider(tmp_path / "logs", address=None, init_options={"num_gpus": 2})
    endpoint = EndpointConfig(
        name="gpu", template=WorkerTemplate(gpus_per_worker=1, env={"VESPID_LOG_LEVEL": "warning"})
    )
    try:
        await provider.open()
        assert provider.free_gpus() == 2
        handles = [await provider.start(order(i, endpoint)) for i in (1, 2)]
        assert sorted(h.gpus for h in handles) == [("0",), ("1",)]
        assert provider.free_gpus() == 0
        assert all(provider.state(h) is RunState.RUNNING for h in handles)
        await provider.stop(handles[0])
        assert provider.state(handles[0]) is RunState.EXITED
        await wait_until(lambda: provider.free_gpus() == 1, timeout_s=10)
        pgids: list[int] = handles[0].info["pgids"]
        assert not any(group_alive(pgid) for pgid in pgids)
    finally:
        await provider.close()
