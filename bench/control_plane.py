"""Control-plane figures: /route/ calls per second (signing included, with HMAC tags and
with RSA signatures), and a cold start
from an empty endpoint to the first byte, split into its parts.

    python bench/control_plane.py                 # tiny generated model (fast)
    python bench/control_plane.py --gemma         # the demo's Gemma 3 270M
    python bench/control_plane.py --routes 3000 --json out.json
    python bench/control_plane.py --provider ray   # the cold start through a Ray actor

Route throughput: a control plane in a child process (so its CPU time is its own) with a
null endpoint kept at one ready worker; the bench sends ``--routes`` /route/ calls at 16
concurrent connections and reads the control plane's CPU time from /proc.

Cold start: a control plane in this process with an endpoint at zero workers; one request
arrives and the bench records, on one clock: the scaling decision, the provider having
started the processes, the model server answering /health, the worker reported ready, the
held /route/ call answering with the worker, and the first byte of the streamed answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.tiny_gguf import write_tiny_llama_gguf  # noqa: E402
from vespid.control.policy import WorkerPhase  # noqa: E402
from vespid.control.serve import running_control  # noqa: E402
from vespid.control.settings import ControlSettings  # noqa: E402
from vespid.servers.process import ChildProcess, free_port, wait_http  # noqa: E402

CLOCK_TICK_S = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK_S


async def admin(
    http: aiohttp.ClientSession, url: str, key: str, method: str, path: str, body: Any = None
) -> Any:
    async with http.request(
        method, url + path, json=body, headers={"Authorization": f"Bearer {key}"}
    ) as resp:
        if resp.status >= 400:
            raise RuntimeError(f"{method} {path}: {resp.status} {await resp.text()}")
        return await resp.json()


async def route_throughput(
    routes: int, concurrency: int, workdir: Path, signing: str
) -> dict[str, Any]:
    port = free_port()
    state = workdir / f"route-state-{signing}"
    env = {"VESPID_CONTROL_PORT": str(port), "VESPID_STATE_DIR": str(state),
           "VESPID_ADMIN_KEY": "bench-admin-key", "VESPID_LOG_LEVEL": "warning",
           "VESPID_REQUEST_SIGNING": signing,
           "VESPID_STOP_WORKERS_ON_EXIT": "true"}  # fmt: skip
    control = ChildProcess.python(
        "vespid control", "-m", "vespid.cli.main", "control", env=env,
        log_path=workdir / f"control-{signing}.log",
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    await control.start()
    try:
        await wait_http(url + "/pubkey/", timeout_s=30, proc=control)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:
            spec = {
                "name": "bench",
                "scaling": {"min_load": 100, "target_util": 1.0, "max_workers": 1,
                            "max_queue_time": 1e9, "inactivity_timeout": 0},
                "template": {"env": {"VESPID_LOG_LEVEL": "warning"}},
            }  # fmt: skip
            ep = await admin(http, url, "bench-admin-key", "POST", "/api/v0/endpoints", spec)
            async with asyncio.timeout(60):  # the null worker comes up
                while True:
                    status = await admin(http, url, "bench-admin-key", "GET", "/api/v0/status")
                    workers = status["endpoints"][0]["workers"]
                    if workers and workers[0]["state"] == "ready":
                        break
                    await asyncio.sleep(0.1)
            body = json.dumps({"endpoint": "bench", "api_key": ep["api_key"], "cost": 1}).encode()
            headers = {"Content-Type": "application/json"}
            routed = 0

            async def caller(n: int) -> None:
                nonlocal routed
                for _ in range(n):
                    async with http.post(url + "/route/", data=body, headers=headers) as resp:
                        answer = await resp.json()
                        routed += "url" in answer and "signature" in answer

            await caller(100)  # warm-up
            routed = 0
            assert control.pid is not None
            cpu0, t0 = cpu_seconds(control.pid), time.perf_counter()
            per = routes // concurrency
            await asyncio.gather(*(caller(per) for _ in range(concurrency)))
            wall = time.perf_counter() - t0
            cpu = cpu_seconds(control.pid) - cpu0
        total = per * concurrency
        return {
            "routes": total,
            "routed_with_signature": routed,
            "wall_s": round(wall, 3),
            "routes_per_s": round(total / wall, 1),
            "control_cpu_s": round(cpu, 3),
            "routes_per_cpu_s": round(total / cpu, 1) if cpu else None,
            "cpu_us_per_route": round(cpu / total * 1e6, 1),
        }
    finally:
        await control.stop()


async def cold_start(model_args: list[str], workdir: Path, provider: str) -> dict[str, Any]:
    settings = ControlSettings(
        host="127.0.0.1", port=0, state_dir=workdir / "cold-state", scale_interval_s=0.1,
        log_level="warning", provider=provider, stop_workers_on_exit=True,
    )  # fmt: skip
    async with running_control(settings, os.environ) as control, aiohttp.ClientSession() as http:
        spec = {
            "name": "llm",
            "scaling": {"min_load": 0, "max_workers": 1, "inactivity_timeout": 0},
            "template": {
                "model_command": [sys.executable, "-m", "vespid.servers.llamacpp", *model_args,
                                  "--port", "{model_port}"],
                "env": {"HEALTHCHECK_ENDPOINT": "/health", "VESPID_LOG_LEVEL": "warning",
                        "VESPID_CACHE_DIR": str(workdir / "bench-cache")},
            },
        }  # fmt: skip
        ep = await admin(http, control.url, control.admin_key, "POST", "/api/v0/endpoints", spec)
        marks: dict[str, float] = {}

        async def watch() -> None:
            model_url = None
            while True:
                record = next(iter(control.fleet.workers.values()), None)
                if record is not None and model_url is None:
                    model_url = f"http://127.0.0.1:{record.handle.info['model_port']}/health"
                if model_url and "model_up" not in marks:
                    try:
                        async with http.get(model_url) as r:
                            if r.status == 200:
                                marks["model_up"] = time.time()
                    except aiohttp.ClientError:
                        pass
                if record is not None and record.phase is WorkerPhase.READY:
                    marks.setdefault("worker_ready", time.time())
                    return
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        marks["request"] = time.time()
        body: dict[str, Any] = {"endpoint": "llm", "api_key": ep["api_key"], "cost": 16}
        async with asyncio.timeout(300):
            while True:
                async with http.post(control.url + "/route/", json=body) as resp:
                    answer = await resp.json()
                if "url" in answer:
                    break
                body["request_idx"] = answer["request_idx"]
        marks["routed"] = time.time()
        payload = {"prompt": "The capital of France is", "max_tokens": 16, "stream": True}
        async with http.post(
            answer["url"] + "/v1/completions", json={"auth_data": answer, "payload": payload}
        ) as resp:
            await resp.content.readany()
            marks["first_byte"] = time.time()
            await resp.read()
        await watcher
        start = next(e for e in control.scaling_log if e["action"] == "start")
        marks["spawned"] = start["time"]
        marks["decided"] = start["time"] - start["provider_s"]
    t = {k: v - marks["request"] for k, v in marks.items()}
    parts = {
        "decision (request -> scaling decision)": t["decided"],
        "provider start (processes spawned)": t["spawned"] - t["decided"],
        "model load (spawned -> model /health 200)": t["model_up"] - t["spawned"],
        "worker ready (model up -> benchmark, report)": t["worker_ready"] - t["model_up"],
        "routing (ready -> /route/ answers)": t["routed"] - t["worker_ready"],
        "first byte (route -> first streamed byte)": t["first_byte"] - t["routed"],
    }
    vespid_s = t["first_byte"] - (t["spawned"] - t["decided"]) - (t["model_up"] - t["spawned"])
    return {
        "total_s": round(t["first_byte"], 3),
        "parts_s": {k: round(v, 3) for k, v in parts.items()},
        "vespid_overhead_s": round(vespid_s, 3),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--gemma", action="store_true", help="cold-start the demo's Gemma model")
    parser.add_argument("--provider", choices=("local", "ray"), default="local",
                        help="where the cold-started worker runs")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vespid-bench-") as tmp:
        workdir = Path(tmp)
        if args.gemma:
            model_args = ["--model", "gemma"]
        else:
            model = await asyncio.to_thread(write_tiny_llama_gguf, workdir / "tiny.gguf")
            model_args = ["--model", str(model), "--threads", "1", "--ctx", "2048"]
        routes = {
            signing: await route_throughput(args.routes, args.concurrency, workdir, signing)
            for signing in ("hmac", "rsa")
        }
        cold = await cold_start(model_args, workdir, args.provider)
    print(f"/route/ on one control-plane process ({os.cpu_count()} CPUs on this machine):")
    for signing, kind in (("hmac", "HMAC tags (the default)"), ("rsa", "RSA signatures")):
        r = routes[signing]
        print(
            f"  {kind}: {r['routes']} routes at {args.concurrency} connections: "
            f"{r['routes_per_s']} routes/s wall, {r['routes_per_cpu_s']} routes per "
            f"CPU-second ({r['cpu_us_per_route']} µs CPU per route, signing included)"
        )
    print(
        f"cold start ({'Gemma 3 270M' if args.gemma else 'tiny model'}, {args.provider} "
        "provider): "
        f"{cold['total_s']} s from request to first byte"
    )
    for name, seconds in cold["parts_s"].items():
        print(f"  {name:48s} {seconds:8.3f} s")
    print(f"  {'vespid overhead (total - provider - model load)':48s} "
          f"{cold['vespid_overhead_s']:8.3f} s")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"route": routes, "cold_start": cold}, indent=2))


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
