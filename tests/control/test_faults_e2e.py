"""A worker killed mid-load loses no request: the client re-routes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.control.conftest import MakeControl, admin
from tests.control.test_scaling_e2e import llama_endpoint
from tests.support.waiting import wait_until
from vespid.client import Client
from vespid.control.policy import WorkerPhase
from vespid.control.providers.local import LocalProvider


async def in_flight(http: aiohttp.ClientSession, worker_url: str) -> float:
    async with http.get(worker_url + "/metrics") as resp:
        text = await resp.text()
    line = next(x for x in text.splitlines() if x.startswith("vespid_worker_in_flight "))
    return float(line.split()[1])


async def test_worker_killed_mid_load_loses_no_request(
    make_control: MakeControl, http: aiohttp.ClientSession, tiny_model: Path
) -> None:
    control = await make_control()
    # min_load 40 at 20 workload/s per worker keeps two workers up.
    spec = llama_endpoint(tiny_model, min_load=40, inactivity_timeout=0)
    _, ep = await admin(http, control, "POST", "/api/v0/endpoints", spec)

    def ready() -> list[int]:
        return [w.worker_id for w in control.fleet.workers.values()
                if w.phase is WorkerPhase.READY]  # fmt: skip

    await wait_until(lambda: len(ready()) == 2, timeout_s=60)
    victim = control.fleet.workers[ready()[0]]
    attempts: list[int] = []

    async with Client(control.url, ep["api_key"], timeout_s=60) as client:
        endpoint = await client.get_endpoint("llm")

        async def one(i: int) -> int:
            resp = await endpoint.request(
                "/v1/completions", {"prompt": f"request {i}", "max_tokens": 64}, cost=5
            )
            body = await resp.json()
            attempts.append(resp.attempts)
            assert body["usage"]["completion_tokens"] == 64
            return resp.status

        tasks = [asyncio.create_task(one(i)) for i in range(24)]
        # Kill the victim while it is serving: its own gauge is read live at each scrape.
        async with asyncio.timeout(60):
            while await in_flight(http, victim.url) < 2:  # noqa: ASYNC110 - scraping a gauge
                await asyncio.sleep(0.002)
        assert isinstance(control.provider, LocalProvider)
        control.provider.kill(victim.handle)  # SIGKILL its worker and model server
        statuses = await asyncio.gather(*tasks)

    assert statuses == [200] * 24  # every request answered, none lost
    assert max(attempts) > 1  # some were in flight on the killed worker and re-routed
    await wait_until(lambda: victim.worker_id not in control.fleet.workers, timeout_s=30)
    await wait_until(lambda: len(ready()) == 2, timeout_s=60)  # replaced
