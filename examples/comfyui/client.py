"""Make an image with ComfyUI through a vespid worker.

With the worker's ``vespid.handlers.comfyui`` handler (``wait=True``): one ``POST
/prompt/wait`` that answers with the run's outputs once the image exists, then ``GET
/view``. Without it, the way a ComfyUI client does: ``POST /prompt``, poll ``GET
/history/<id>``, ``GET /view``.

POSTs carry the envelope; the GETs carry auth_data as JSON in ``X-Vespid-Auth``. The
image's request costs its workload (``image_workload(width, height, steps)``, what the
benchmark counts); the polls cost 0.

``python -m examples.comfyui.client http://127.0.0.1:3000 out.png [--poll]``
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from vespid.benchmarks.comfyui import image_ops_workflow, image_workload
from vespid.protocol.wire import AUTH_HEADER


def dev_auth(cost: float, endpoint: str) -> dict[str, Any]:
    """auth_data for an UNSECURED worker."""
    return {
        "cost": cost,
        "endpoint": endpoint,
        "reqnum": 0,
        "request_idx": 0,
        "signature": "",
        "url": "",
    }


async def make_image(
    worker_url: str,
    workflow: dict[str, Any],
    cost: float,
    *,
    wait: bool = True,
    timeout_s: float = 300,
) -> bytes:
    """Run ``workflow``, return its first image's bytes."""
    header = {AUTH_HEADER: orjson.dumps(dev_auth(0, "/history")).decode()}
    async with aiohttp.ClientSession() as http:
        route = "/prompt/wait" if wait else "/prompt"
        body = {"auth_data": dev_auth(cost, route), "payload": {"prompt": workflow}}
        async with http.post(worker_url + route, json=body) as resp:
            resp.raise_for_status()
            answer = await resp.json()
        prompt_id = answer["prompt_id"]
        entry = answer if wait else await poll_history(http, worker_url, prompt_id, timeout_s)
        for output in entry["outputs"].values():
            for image in output.get("images", []):
                async with http.get(worker_url + "/view", params=image, headers=header) as r:
                    r.raise_for_status()
                    return await r.read()
    raise RuntimeError(f"run {prompt_id} produced no image")


async def poll_history(
    http: aiohttp.ClientSession, worker_url: str, prompt_id: str, timeout_s: float
) -> dict[str, Any]:
    """The run's history entry, polled until it is complete."""
    header = {AUTH_HEADER: orjson.dumps(dev_auth(0, "/history")).decode()}
    delay_s = 0.02
    async with asyncio.timeout(timeout_s):
        while True:  # the history is empty until the run is finished
            async with http.get(f"{worker_url}/history/{prompt_id}", headers=header) as r:
                entry: dict[str, Any] | None = (await r.json()).get(prompt_id)
            if entry and entry["status"].get("completed"):
                return entry
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 1.5, 0.5)


async def main(
    worker_url: str, out: Path, *, wait: bool = True, width: int = 256, height: int = 256
) -> None:
    steps = 4
    graph = image_ops_workflow(width, height, steps, seed=0x336699)
    data = await make_image(worker_url, graph, image_workload(width, height, steps), wait=wait)
    await asyncio.to_thread(out.write_bytes, data)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), wait="--poll" not in sys.argv[3:]))
