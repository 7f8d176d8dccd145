"""Waking a parked worker vs a cold start, on llama.cpp (xllamacpp) and the tiny GGUF model.

Cold start: the model server and the worker (``python -m vespid.worker``) start from
nothing; measured until the first completion is answered through the worker. Wake: on
that worker, ``POST /vespid/park`` (``VESPID_SLEEP=none``: llama.cpp has no sleep hook, so
the server stays loaded and idle), then ``POST /vespid/wake`` and the first completion,
timed from the wake call to that answer. The worker is told its throughput
(``VESPID_MAX_PERF``), so the cold start leaves the benchmark out (a real cold start also
downloads and loads a real model: this is the floor). Prints the median of each.

Usage: ``python bench/wake_time.py [--cold-runs 3] [--wake-runs 5] [--model PATH.gguf]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.tiny_gguf import write_tiny_llama_gguf  # noqa: E402
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--wake-runs", type=int, default=5)
    parser.add_argument("--model", type=Path, default=None)
    args = parser.parse_args()
    asyncio.run(main(args.cold_runs, args.wake_runs, args.model))
