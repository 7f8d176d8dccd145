"""Parked workers on a real control plane, end to end on 127.0.0.1: local-process workers
in front of the vLLM stand-in with its sleep mode (``VESPID_SLEEP=vllm``), requests
through the client SDK. Load grows the fleet to two; with no load both are parked (status
API, /metrics and the stand-in's ``/is_sleeping`` agree); a burst is served by waking
them, with no new start; idle again, they are parked, and ``park_timeout`` stops them: the
endpoint reaches zero workers."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import aiohttp

from tests.control.conftest import MakeControl, admin
from tests.support.waiting import wait_until
from vespid.client import Client
from vespid.control.app import ControlPlane
from vespid.control.policy import WorkerPhase

VLLM = ["python", "-m", "vespid.testing.vllm", "--port", "{model_port}"]
ENDPOINT: dict[str, Any] = {
    "name": "vllm",
    # The defaults (reservoir mode) but for what keeps the test short: two workers at
    # most, idle after 2 s, a 0.5 s window; park_timeout 0 keeps the parked pool until
    # the test sets it.
    "scaling": {"max_workers": 2, "inactivity_timeout": 2, "scale_down_delay": 0.5,
                "park_timeout": 0},
    "template": {
        "model_command": VLLM,
        # A fixed throughput of 20/s: a few requests of cost 50 at once need two workers.
        "env": {"HEALTHCHECK_ENDPOINT": "/health", "VESPID_MAX_PERF": "20",
                "VESPID_SLEEP": "vllm", "VESPID_LOG_LEVEL": "warning"},
        "ready_timeout": 60,
    },
}  # fmt: skip
PAYLOAD = {"model": "vespid/vllm-stand-in", "prompt": "hello", "max_tokens": 4}


def phases(control: ControlPlane) -> list[WorkerPhase]:
    return [w.phase for w in control.fleet.workers.values()]


def actions_since(control: ControlPlane, t: float) -> list[dict[str, Any]]:
    return [e for e in control.scaling_log if e["time"] >= t]


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def metric(http: aiohttp.ClientSession, control: ControlPlane, name: str) -> float:
    """A sample of ``/metrics`` for the endpoint (0 when absent)."""
    async with http.get(control.url + "/metrics") as resp:
        text = await resp.text()
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def burst(client: Client, requests: int) -> list[int]:
    """``requests`` completions of cost 50 at once; their statuses."""
    endpoint = await client.get_endpoint("vllm")

    async def one() -> int:
        resp = await endpoint.request("/v1/completions", PAYLOAD, cost=50)
        await resp.read()
        return resp.status

    return list(await asyncio.gather(*(one() for _ in range(requests))))


async def wait_parked(http: aiohttp.ClientSession, control: ControlPlane) -> None:
    """Both workers parked, and each one's vLLM stand-in asleep."""
    await wait_until(lambda: phases(control) == [WorkerPhase.PARKED] * 2, timeout_s=60)
    for record in control.fleet.workers.values():
        model_url = f"http://127.0.0.1:{record.handle.info['model_port']}"
        assert await get_json(http, model_url + "/is_sleeping") == {"is_sleeping": True}


async def test_a_burst_wakes_parked_workers_and_park_timeout_reaches_zero(
    make_control: MakeControl, http: aiohttp.ClientSession
) -> None:
    control = await make_control()
    _, ep = await admin(http, control, "POST", "/api/v0/endpoints", ENDPOINT)
    async with Client(control.url, ep["api_key"], timeout_s=60) as client:
        # Load, bounded, until two workers serve.
        async with asyncio.timeout(90):
            while phases(control).count(WorkerPhase.READY) < 2:
                assert set(await burst(client, 4)) == {200}
        assert [e["action"] for e in control.scaling_log].count("start") == 2

        # No load: after inactivity_timeout both are parked, asleep, not stopped.
        await wait_parked(http, control)
        assert not [e for e in control.scaling_log if e["action"] == "stop"]
        await wait_until(lambda: control.fleet.parked_seconds("vllm") > 0)
        status = await get_json(http, control.url + "/api/v0/status")
        (shown,) = status["endpoints"]
        assert [w["state"] for w in shown["workers"]] == ["parked", "parked"]
        assert shown["parked_s"] > 0
        assert (
            await metric(http, control, 'vespid_control_workers{endpoint="vllm",state="parked"}')
            == 2
        )
        assert (
            await metric(http, control, 'vespid_control_parked_seconds_total{endpoint="vllm"}') > 0
        )

        # A burst: served by waking the parked workers, no worker started for it.
        woken_at = time.time()
        assert set(await burst(client, 6)) == {200}
        during = [e["action"] for e in actions_since(control, woken_at)]
        assert "wake" in during, during
        assert "start" not in during, during
        assert len(control.fleet.workers) == 2

        def history_shows_wake() -> bool:
            series = control.history.to_json(woken_at)["endpoints"]["vllm"]
            return any(s["woken"] for s in series)

        await wait_until(history_shows_wake, timeout_s=10)
        series = control.history.to_json(woken_at)["endpoints"]["vllm"]
        assert sum(s["started"] for s in series) == 0

        # Idle again: parked again; then park_timeout stops them, and nothing is left.
        await wait_parked(http, control)
        stopping_at = time.time()
        code, _ = await admin(http, control, "PUT", "/api/v0/endpoints/vllm",
                              {"scaling": {"park_timeout": 0.5}})  # fmt: skip
        assert code == 200

        def stops() -> list[dict[str, Any]]:
            return [e for e in actions_since(control, stopping_at) if e["action"] == "stop"]

        await wait_until(lambda: len(stops()) == 2 and not control.fleet.workers, timeout_s=60)
        assert all("parked past park_timeout" in e["reason"] for e in stops())
        status = await get_json(http, control.url + "/api/v0/status")
        assert status["endpoints"][0]["workers"] == []
