"""Parking and waking a worker: ``POST /vespid/park`` and ``/vespid/wake`` against the vLLM
stand-in (its sleep-mode routes), real llama.cpp, and a model server stopped by signal."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.support.servers import start_app
from tests.support.waiting import wait_until
from tests.worker.conftest import MakeWorker, RunningWorker, envelope
from vespid.servers.process import (
    ChildProcess,
    proc_stat,
    process_start_time,
)
from vespid.testing.vllm import VLLMStandIn
from vespid.worker.lifecycle import WorkerState

TOKEN = "park-tok"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
_idx = itertools.count(1)


def completion(max_tokens: int = 4) -> dict[str, Any]:
    i = next(_idx)
    auth = {"cost": 1, "endpoint": "e", "reqnum": i, "request_idx": i, "signature": "", "url": ""}
    return envelope(auth, {"model": "m", "prompt": "hello there", "max_tokens": max_tokens})


@pytest.fixture
async def vllm() -> AsyncIterator[tuple[VLLMStandIn, str]]:
    stand_in = VLLMStandIn(token_s=0.0)
    async with start_app(stand_in.app()) as url:
        yield stand_in, url


async def parked_worker(
    make_worker: MakeWorker, url: str, wait_ready: bool = True, **env: str
) -> RunningWorker:
    return await make_worker(
        wait_ready, BACKEND_URL=url, UNSECURED="true", VESPID_MAX_PERF="100",
        MASTER_TOKEN=TOKEN, **env,
    )  # fmt: skip


async def call(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with http.post(url, headers=headers or {}) as resp:
        return resp.status, await resp.json()


async def test_park_and_wake_put_vllm_to_sleep_and_back(
    make_worker: MakeWorker, vllm: tuple[VLLMStandIn, str], http: aiohttp.ClientSession
) -> None:
    stand_in, url = vllm
    worker = await parked_worker(
        make_worker, url, VESPID_SLEEP="vllm", HEALTHCHECK_ENDPOINT="/health"
    )
    status, body = await call(http, worker.url + "/vespid/park", AUTH)
    assert (status, body["parked"]) == (200, True)
    assert (stand_in.sleeps, stand_in.sleep_level) == (1, 1)
    async with http.get(url + "/is_sleeping") as resp:
        assert await resp.json() == {"is_sleeping": True}
    async with http.post(worker.url + "/v1/completions", json=completion()) as resp:
        refused = await resp.json()
        assert resp.status == 503
    assert "parked" in refused["error"]
    async with http.post(worker.url + "/session/create", json=completion()) as resp:
        assert resp.status == 503
        assert "parked" in (await resp.json())["error"]
    status, body = await call(http, worker.url + "/vespid/wake", AUTH)
    assert (status, body["parked"]) == (200, False)
    assert worker.worker.lifecycle.state is WorkerState.READY
    async with http.post(worker.url + "/v1/completions", json=completion()) as resp:
        answer = await resp.json()
        assert resp.status == 200
    assert answer["choices"][0]["finish_reason"] == "length"
    assert (stand_in.wakes, stand_in.requests_while_asleep) == (1, 0)


async def test_park_waits_for_requests_in_flight(
    make_worker: MakeWorker, http: aiohttp.ClientSession
) -> None:
    stand_in = VLLMStandIn(token_s=0.02)
    async with start_app(stand_in.app()) as url:
        worker = await parked_worker(make_worker, url, VESPID_SLEEP="vllm")
        running = asyncio.create_task(
            http.post(worker.url + "/v1/completions", json=completion(max_tokens=20))
        )
        await wait_until(lambda: worker.worker.admission.running == 1)
        status, _ = await call(http, worker.url + "/vespid/park", AUTH)
        assert status == 200
        resp = await running
        answer = await resp.json()
        assert answer["choices"][0]["finish_reason"] == "length"  # not cut by the sleep
        status, _ = await call(http, worker.url + "/vespid/wake", AUTH)
        assert status == 200


async def test_health_checks_pause_while_parked(
    make_worker: MakeWorker, vllm: tuple[VLLMStandIn, str], http: aiohttp.ClientSession
) -> None:
    """A backend whose health check fails while asleep does not make the worker errored."""
    stand_in, url = vllm
    worker = await parked_worker(
        make_worker,
        url,
        VESPID_SLEEP="vllm",
        HEALTHCHECK_ENDPOINT="/is_sleeping_fails",
        VESPID_HEALTH_INTERVAL_S="0.01",
        wait_ready=False,
    )
    # The health path answers 404, so the worker is held loading; switch to one that
    # passes only while awake, the way a stopped server's would.
    life = worker.worker.lifecycle
    object.__setattr__(worker.worker.settings, "healthcheck_endpoint", "/v1/models")
    await worker.wait_state(WorkerState.READY)
    assert (await call(http, worker.url + "/vespid/park", AUTH))[0] == 200
    object.__setattr__(worker.worker.settings, "healthcheck_endpoint", "/missing")
    with pytest.raises(TimeoutError):  # twenty health intervals: still parked, not errored
        await worker.wait_state(WorkerState.ERRORED, timeout_s=0.2)
    assert life.state is WorkerState.PARKED
    object.__setattr__(worker.worker.settings, "healthcheck_endpoint", "/health")
    assert (await call(http, worker.url + "/vespid/wake", AUTH))[0] == 200
    assert stand_in.requests_while_asleep == 0


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic park-tok"}]
)
async def test_park_and_wake_need_the_master_token(
    make_worker: MakeWorker,
    vllm: tuple[VLLMStandIn, str],
    http: aiohttp.ClientSession,
    headers: dict[str, str],
) -> None:
    stand_in, url = vllm
    worker = await parked_worker(make_worker, url, VESPID_SLEEP="vllm")
    for route in ("/vespid/park", "/vespid/wake"):
        status, body = await call(http, worker.url + route, headers)
        assert status == 401
        assert body["code"] == "unauthorized"
        assert "MASTER_TOKEN" in body["error"]
    assert stand_in.sleeps == 0


async def test_park_and_wake_on_llama_cpp(
    make_worker: MakeWorker, llama_url: str, http: aiohttp.ClientSession
) -> None:
    worker = await parked_worker(make_worker, llama_url, HEALTHCHECK_ENDPOINT="/health")
    for _ in range(2):
        assert (await call(http, worker.url + "/vespid/park", AUTH))[1]["parked"] is True
        async with http.post(worker.url + "/v1/completions", json=completion()) as resp:
            assert resp.status == 503
        assert (await call(http, worker.url + "/vespid/wake", AUTH))[1]["parked"] is False
        async with http.post(worker.url + "/v1/completions", json=completion()) as resp:
            assert resp.status == 200
            assert (await resp.json())["choices"][0]["text"] is not None


async def test_signal_sleep_stops_and_continues_the_model_server(
    make_worker: MakeWorker,
    http: aiohttp.ClientSession,
    vllm_process: tuple[ChildProcess, str],
) -> None:
    server, url = vllm_process
    assert server.pid is not None
    start = await asyncio.to_thread(process_start_time, server.pid)
    worker = await parked_worker(
        make_worker,
        url,
        VESPID_SLEEP="signal",
        VESPID_MODEL_PID=str(server.pid),
        VESPID_MODEL_PID_START=str(start),
        HEALTHCHECK_ENDPOINT="/health",
    )
    assert (await call(http, worker.url + "/vespid/park", AUTH))[0] == 200
    await _wait_process_state(server.pid, stopped=True)
    assert (await call(http, worker.url + "/vespid/wake", AUTH))[0] == 200
    await _wait_process_state(server.pid, stopped=False)
    async with http.post(worker.url + "/v1/completions", json=completion()) as resp:
        assert resp.status == 200


async def _wait_process_state(pid: int, *, stopped: bool) -> None:
    """Wait (10 s at most) until process ``pid`` is stopped by a signal, or not."""
    async with asyncio.timeout(10):
        while True:
            fields = await asyncio.to_thread(proc_stat, pid)
            assert fields is not None
            if (fields[0] == b"T") == stopped:
                return
            await asyncio.sleep(0.01)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"VESPID_SLEEP": "deep"}, "VESPID_SLEEP"),
        ({"VESPID_SLEEP": "http", "VESPID_SLEEP_PATH": "/sleep"}, "VESPID_SLEEP_PATH"),
        ({"VESPID_SLEEP": "signal"}, "VESPID_MODEL_PID"),
        ({"VESPID_MODEL_PID": "1234"}, "VESPID_MODEL_PID_START"),
        ({"VESPID_ORPHAN_TIMEOUT": "-1"}, "VESPID_ORPHAN_TIMEOUT"),
    ],
)
async def test_a_bad_sleep_setting_stops_start_up(env: dict[str, str], named: str) -> None:
    full = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        "BACKEND_URL": "http://127.0.0.1:9",
        "UNSECURED": "true",
        **env,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vespid.worker", env=full, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 2
    assert len(lines) == 1
    assert named in lines[0]
