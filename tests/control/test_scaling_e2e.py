"""End to end on 127.0.0.1: control plane + local provider + real llama.cpp workers."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.control.conftest import MakeControl, admin
from tests.support.waiting import wait_until
from vespid.control.app import ControlPlane
from vespid.control.policy import WorkerPhase


def llama_endpoint(model: Path, **scaling: Any) -> dict[str, Any]:
    return {
        "name": "llm",
        # No reservoir: these tests scale to zero by stopping workers, not parking them.
        "scaling": {"min_load": 0, "max_workers": 2, "target_util": 1.0,
                    "inactivity_timeout": 2, "scale_down_delay": 0.5,
                    "reservoir_workers": 0, **scaling},
        "template": {
            "model_command": [sys.executable, "-m", "vespid.servers.llamacpp", "--model",
                              str(model), "--port", "{model_port}", "--threads", "1",
                              "--ctx", "256"],
            # A fixed, small throughput so that a handful of requests needs two workers.
            "env": {"HEALTHCHECK_ENDPOINT": "/health", "VESPID_MAX_PERF": "20",
                    "VESPID_LOG_LEVEL": "warning"},
            "ready_timeout": 60,
        },
    }  # fmt: skip


async def complete(
    http: aiohttp.ClientSession, control: ControlPlane, key: str, cost: float = 10
) -> dict[str, Any]:
    """Route (polling while queued), then call the worker: what a client does."""
    body: dict[str, Any] = {"endpoint": "llm", "api_key": key, "cost": cost, "request_idx": 0}
    async with asyncio.timeout(90):
        while True:
            async with http.post(control.url + "/route/", json=body) as resp:
                assert resp.status == 200, await resp.text()
                answer = await resp.json()
            if "url" in answer:
                break
            body["request_idx"] = answer["request_idx"]
            await asyncio.sleep(0.1)
    payload = {"prompt": "hello", "max_tokens": 4}
    async with http.post(answer["url"] + "/v1/completions",
                         json={"auth_data": answer, "payload": payload}) as resp:  # fmt: skip
        assert resp.status == 200, await resp.text()
        result: dict[str, Any] = await resp.json()
        return result


async def test_scale_from_zero_to_two_and_back_to_zero(
    make_control: MakeControl, http: aiohttp.ClientSession, tiny_model: Path
) -> None:
    control = await make_control()
    _, ep = await admin(http, control, "POST", "/api/v0/endpoints", llama_endpoint(tiny_model))
    assert not control.fleet.workers  # nothing runs before the first request

    first = await complete(http, control, ep["api_key"])
    assert first["usage"]["completion_tokens"] == 4
    assert len(control.fleet.workers) == 1

    # Each request costs 50 at 20 workload/s per worker: 2.5 s of one worker's time, so a
    # few at once need more than one worker (capped at max_workers = 2). Keep the load
    # up (bounded) until both workers serve.
    def both_ready() -> bool:
        return sum(w.phase is WorkerPhase.READY for w in control.fleet.workers.values()) == 2

    served = 0
    async with asyncio.timeout(60):
        while not both_ready():
            batch = await asyncio.gather(
                *(complete(http, control, ep["api_key"], cost=50) for _ in range(4))
            )
            served += len(batch)
    assert served <= 4 * 60
    starts = [e for e in control.scaling_log if e["action"] == "start"]
    assert len(starts) == 2

    # No load for inactivity_timeout (2 s): back to zero.
    def stopped() -> int:
        return sum(e["action"] == "stop" for e in control.scaling_log)

    await wait_until(lambda: stopped() == 2, timeout_s=60)
    assert not control.fleet.workers
