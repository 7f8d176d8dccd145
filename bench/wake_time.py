"""Waking a parked worker vs a cold start, on llama.cpp (xllamacpp) and the tiny GGUF model.

Cold start: the model server and the worker (``python -m vespid.worker``) start from
nothing; measured until the first completion is answered through the worker. Wake: on
that worker, ``POST /vespid/park`` (``VESPID_SLEEP=none``: llama.cpp has no sleep hook, so
the server stays loaded and idle), then ``POST /vespid/wake`` and the first completion,
timed from the wake call to that answer. The worker is told its throughput
(``VESPID_MAX_PERF``), so the cold start leaves the benchmark out (a real cold start also
downloads and loads a real model: this is the floor). Prints the median of each.

The control-plane path (``--control``): a real control plane in this process, local-process
workers, a streamed completion through the client SDK, timed from the call to its first
byte. Cold: the endpoint has no worker (``reservoir_workers`` 0: idle workers are
stopped), so the request waits for a worker to start. Wake: the endpoint's one worker is
parked (reservoir mode, ``park_timeout`` 0), so the request is served by waking it. Prints
the median of each, and of the time from the request to the wake the scaling log records
once the worker answered it (the control plane seeing the request and waking the worker).

Usage: ``python bench/wake_time.py [--cold-runs 3] [--wake-runs 5] [--model PATH.gguf]
[--control]``
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.tiny_gguf import write_tiny_llama_gguf  # noqa: E402
from vespid.client import Client  # noqa: E402
from vespid.control.fleet import Fleet  # noqa: E402
from vespid.control.policy import WorkerPhase  # noqa: E402
from vespid.control.serve import running_control  # noqa: E402
from vespid.control.settings import ControlSettings  # noqa: E402
from vespid.servers.process import ChildProcess, free_port  # noqa: E402

TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BODY = {
    "auth_data": {"cost": 1, "endpoint": "e", "reqnum": 1, "request_idx": 1, "signature": "",
                  "url": ""},
    "payload": {"prompt": "hello", "max_tokens": 4},
}  # fmt: skip


async def first_answer(http: aiohttp.ClientSession, url: str, deadline_s: float = 120) -> None:
    """Send completions until one is answered 200 (503 while loading)."""
    async with asyncio.timeout(deadline_s):
        while True:
            try:
                async with http.post(url + "/v1/completions", json=BODY) as resp:
                    await resp.read()
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.01)


async def start_pair(model: Path, workdir: Path) -> tuple[ChildProcess, ChildProcess, str]:
    """The model server and its worker, both starting; the worker's URL."""
    port, worker_port = free_port(), free_port()
    server = ChildProcess.python(
        "llama.cpp", "-m", "vespid.servers.llamacpp", "--model", str(model), "--port",
        str(port), "--parallel", "2", "--ctx", "512", "--threads", "1",
        log_path=workdir / "llama.log",
    )  # fmt: skip
    env = {
        "BACKEND_URL": f"http://127.0.0.1:{port}", "UNSECURED": "true", "VESPID_MAX_PERF": "10",
        "MASTER_TOKEN": TOKEN, "WORKER_PORT": str(worker_port),
        "WORKER_HTTP_PORT": str(free_port()), "VESPID_HOST": "127.0.0.1",
        "HEALTHCHECK_ENDPOINT": "/health", "VESPID_LOG_LEVEL": "warning",
        "VESPID_CACHE_DIR": str(workdir / "cache"),
    }  # fmt: skip
    worker = ChildProcess.python("worker", "-m", "vespid.worker", env=env)
    await server.start()
    await worker.start()
    return server, worker, f"http://127.0.0.1:{worker_port}"


async def main(cold_runs: int, wake_runs: int, model: Path | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if model is None:
            model = await asyncio.to_thread(write_tiny_llama_gguf, workdir / "tiny.gguf")
        colds: list[float] = []
        wakes: list[float] = []
        async with aiohttp.ClientSession() as http:
            for run in range(cold_runs):
                started = time.monotonic()
                server, worker, url = await start_pair(model, workdir)
                try:
                    await first_answer(http, url)
                    colds.append(time.monotonic() - started)
                    if run == cold_runs - 1:
                        wakes = await measure_wakes(http, url, wake_runs)
                finally:
                    await worker.stop()
                    await server.stop()
    print(f"model: {model.name}")
    print(f"cold start to first answer: median {statistics.median(colds):.3f} s "
          f"({', '.join(f'{c:.3f}' for c in colds)})")  # fmt: skip
    print(f"wake to first answer:       median {statistics.median(wakes):.3f} s "
          f"({', '.join(f'{w:.3f}' for w in wakes)})")  # fmt: skip


async def measure_wakes(http: aiohttp.ClientSession, url: str, runs: int) -> list[float]:
    took: list[float] = []
    for _ in range(runs):
        async with http.post(url + "/vespid/park", headers=AUTH) as resp:
            assert resp.status == 200, await resp.text()
        started = time.monotonic()
        async with http.post(url + "/vespid/wake", headers=AUTH) as resp:
            assert resp.status == 200, await resp.text()
        await first_answer(http, url)
        took.append(time.monotonic() - started)
    return took


# -- the control-plane path ------------------------------------------------------------


def bench_endpoint(name: str, model: Path, *, parked: bool) -> dict[str, Any]:
    """A llama.cpp endpoint idle after 1 s: parking its worker (``parked``) or stopping it."""
    scaling = {"max_workers": 1, "inactivity_timeout": 1, "scale_down_delay": 0,
               "reservoir_workers": 6 if parked else 0, "park_timeout": 0}  # fmt: skip
    command = [sys.executable, "-m", "vespid.servers.llamacpp", "--model", str(model),
               "--port", "{model_port}", "--threads", "1", "--ctx", "256"]  # fmt: skip
    env = {
        "HEALTHCHECK_ENDPOINT": "/health",
        "VESPID_MAX_PERF": "10",
        "VESPID_LOG_LEVEL": "warning",
    }
    return {"name": name, "scaling": scaling,
            "template": {"model_command": command, "env": env, "ready_timeout": 120}}  # fmt: skip


async def first_byte(client: Client, name: str) -> float:
    """Seconds from a streamed completion through the SDK to its first byte; reads it all."""
    endpoint = client.endpoint(name)
    payload = {"prompt": "hello", "max_tokens": 4, "stream": True}
    started = time.monotonic()
    async with await endpoint.request("/v1/completions", payload, cost=1, stream=True) as resp:
        took = None
        async for _ in resp.iter_chunks():
            took = took if took is not None else time.monotonic() - started
    assert resp.status == 200, resp.status
    assert took is not None
    return took


async def control_path(runs: int, model: Path, workdir: Path) -> tuple[list[float], ...]:
    """(cold first bytes, wake first bytes, request-to-wake times), ``runs`` of each."""
    settings = ControlSettings(host="127.0.0.1", port=0, state_dir=workdir / "state",
                               scale_interval_s=0.1, log_level="warning",
                               stop_workers_on_exit=True)  # fmt: skip
    colds: list[float] = []
    wakes: list[float] = []
    to_wake: list[float] = []
    async with running_control(settings, os.environ) as control:
        fleet = control.fleet
        for name, parked in (("cold", False), ("warm", True)):
            api_key = await create_endpoint(control.url, control.admin_key,
                                            bench_endpoint(name, model, parked=parked))  # fmt: skip
            async with Client(control.url, api_key, timeout_s=120) as client:
                for run in range(runs + parked):  # warm: the first run starts the worker
                    wanted = [WorkerPhase.PARKED] if parked and run else []
                    await wait_for(functools.partial(has_phases, fleet, name, wanted))
                    sent = time.time()
                    took = await first_byte(client, name)
                    if not parked:
                        colds.append(took)
                    elif run:
                        wakes.append(took)
                        woke = [e["time"] for e in control.scaling_log
                                if e["action"] == "wake" and e["time"] >= sent]  # fmt: skip
                        to_wake.append(woke[0] - sent)
    return colds, wakes, to_wake


def has_phases(fleet: Fleet, endpoint: str, wanted: list[WorkerPhase]) -> bool:
    return [w.phase for w in fleet.of(endpoint)] == wanted


async def create_endpoint(url: str, admin_key: str, spec: dict[str, Any]) -> str:
    """POST the endpoint as an admin; its API key."""
    headers = {"Authorization": f"Bearer {admin_key}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(url + "/api/v0/endpoints", json=spec, headers=headers) as resp,
    ):
        assert resp.status == 201, await resp.text()
        key: str = (await resp.json())["api_key"]
        return key


async def wait_for(predicate: Callable[[], bool], deadline_s: float = 120) -> None:
    async with asyncio.timeout(deadline_s):
        while not predicate():  # noqa: ASYNC110 - polling the fleet, which has no event
            await asyncio.sleep(0.02)


def median_line(label: str, values: list[float]) -> str:
    listed = ", ".join(f"{v:.3f}" for v in values)
    return f"{label} median {statistics.median(values):.3f} s ({listed})"


async def main_control(runs: int, model: Path | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if model is None:
            model = await asyncio.to_thread(write_tiny_llama_gguf, workdir / "tiny.gguf")
        colds, wakes, to_wake = await control_path(runs, model, workdir)
    print(f"model: {model.name}, through a control plane and the client SDK")
    print(median_line("cold start, request to first byte:    ", colds))
    print(median_line("parked worker, request to first byte: ", wakes))
    print(median_line("request to the wake done (scaling log):", to_wake))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--wake-runs", type=int, default=5)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--control", action="store_true", help="the control-plane path")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONPATH", str(ROOT))  # the workers import this vespid
    if args.control:
        asyncio.run(main_control(args.wake_runs, args.model))
    else:
        asyncio.run(main(args.cold_runs, args.wake_runs, args.model))
