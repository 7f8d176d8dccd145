"""Benchmark for ComfyUI: image workflows of a given width, height and steps.

``BENCHMARK=vespid.benchmarks.comfyui:benchmark`` (with ``ALLOW_PARALLEL=false``).
Each request is ComfyUI's own API: ``POST /prompt`` with a workflow, ``GET
/history/<prompt_id>`` polled until the run is complete (the history can still be
empty just after ComfyUI reports the finish, hence polling), then ``GET /view`` of the
first image, as a client would fetch it. Workload per image is
``image_workload(width, height, steps)`` = width * height * steps / 1000; worked
example: 512 x 512 at 20 steps = 5242.88. Clients send the same figure as ``cost``.

The workflow is text-to-image (checkpoint -> CLIP text encode -> empty latent ->
KSampler with ``steps`` -> VAE decode -> save) with the first checkpoint ComfyUI lists,
or ``checkpoint=``. A ComfyUI with no checkpoint gets a model-free workflow instead
(empty image of the size -> ``steps`` image inversions -> save), with a warning: its
figure measures ComfyUI's own pipeline, not a model. Every request varies its seed (or
colour) so ComfyUI's cache never answers it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import aiohttp

from vespid.benchmarks.ramp import Ramp, ramp, read_json
from vespid.benchmarks.words import preload_words, prompt
from vespid.errors import BackendError, BackendTimeout

__all__ = [
    "DEFAULT",
    "ComfyUIBenchmark",
    "benchmark",
    "image_ops_workflow",
    "image_workload",
    "txt2img_workflow",
    "wait_for_run",
]

log = logging.getLogger("vespid.benchmark")

HINT: Final = "is BACKEND_URL a ComfyUI server?"
MAX_COLOUR: Final = 0xFFFFFF


def image_workload(width: int, height: int, steps: int) -> float:
    """Workload of one image: 512 x 512 at 20 steps -> 512 * 512 * 20 / 1000 = 5242.88."""
    return width * height * steps / 1000


def txt2img_workflow(
    checkpoint: str, width: int, height: int, steps: int, seed: int, text: str
) -> dict[str, Any]:
    """ComfyUI's standard text-to-image graph, in its API (prompt) format."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": width, "height": height, "batch_size": 1},
        },
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": steps,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["1", 0],
                "positive": ["2", 0],
                "negative": ["3", 0],
                "latent_image": ["4", 0],
            },
        },
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "vb"}},
    }


def image_ops_workflow(width: int, height: int, steps: int, seed: int) -> dict[str, Any]:
    """A graph that needs no model: an empty image, ``steps`` inversions, save."""
    graph: dict[str, Any] = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": width, "height": height, "batch_size": 1, "color": seed},
        }
    }
    last = "1"
    for step in range(steps):
        node = str(step + 2)
        graph[node] = {"class_type": "ImageInvert", "inputs": {"image": [last, 0]}}
        last = node
    graph[str(steps + 2)] = {
        "class_type": "SaveImage",
        "inputs": {"images": [last, 0], "filename_prefix": "vb"},
    }
    return graph


def _history_error(entry: dict[str, Any]) -> str:
    for kind, data in entry.get("status", {}).get("messages", []):
        if kind == "execution_error" and isinstance(data, dict):
            return f"{data.get('node_type')}: {data.get('exception_message')}".strip()
        if kind == "execution_interrupted":
            return "interrupted"
    return "status error"


async def wait_for_run(
    backend_url: str, session: aiohttp.ClientSession, prompt_id: str, timeout_s: float
) -> dict[str, Any]:
    """Poll ``/history/<prompt_id>`` until the run is over; its history entry.

    BackendError when the run failed (the node and ComfyUI's message), BackendTimeout
    after ``timeout_s``. Polls 10 ms apart at first, then up to 100 ms."""
    what = f"GET {backend_url}/history/{prompt_id}"
    delay_s = 0.01
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                async with session.get(f"{backend_url}/history/{prompt_id}") as resp:
                    history = await read_json(resp, what, HINT)
                entry = history.get(prompt_id) if isinstance(history, dict) else None
                status = entry.get("status", {}) if isinstance(entry, dict) else {}
                if isinstance(entry, dict) and status.get("status_str") == "error":
                    raise BackendError(f"ComfyUI run {prompt_id} failed: {_history_error(entry)}")
                if isinstance(entry, dict) and status.get("completed", True):
                    return entry
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 1.5, 0.1)
    except TimeoutError:
        raise BackendTimeout(
            f"ComfyUI run {prompt_id} not finished after {timeout_s:g} s"
        ) from None


@dataclass(frozen=True, slots=True)
class ComfyUIBenchmark:
    """The ComfyUI benchmark's settings; an instance is a benchmark function."""

    width: int = 512
    height: int = 512
    steps: int = 20
    workflow: Literal["auto", "txt2img", "image_ops"] = "auto"
    checkpoint: str | None = None  # None: the first checkpoint ComfyUI lists
    image_timeout_s: float = 600.0
    ramp: Ramp = field(default_factory=lambda: Ramp(max_concurrency=8))

    async def pick_checkpoint(self, backend_url: str, session: aiohttp.ClientSession) -> str | None:
        what = f"GET {backend_url}/object_info/CheckpointLoaderSimple"
        async with session.get(backend_url + "/object_info/CheckpointLoaderSimple") as resp:
            data = await read_json(resp, what, HINT)
        try:
            names = data["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
        except (KeyError, IndexError, TypeError):
            return None
        return str(names[0]) if isinstance(names, list) and names else None

    async def graph_maker(self, backend_url: str, session: aiohttp.ClientSession) -> Any:
        """A function ``(rng) -> workflow`` for the workflow this benchmark sends."""
        kind = self.workflow
        checkpoint = self.checkpoint
        if kind != "image_ops" and checkpoint is None:
            checkpoint = await self.pick_checkpoint(backend_url, session)
            if checkpoint is None and kind == "txt2img":
                raise BackendError(
                    f"ComfyUI at {backend_url} lists no checkpoint for a txt2img benchmark; "
                    "add a model or use ComfyUIBenchmark(workflow='image_ops')"
                )
        if checkpoint is not None and kind != "image_ops":
            ckpt = checkpoint
            log.info("comfyui benchmark: txt2img with checkpoint %s", ckpt)
            return lambda rng: txt2img_workflow(
                ckpt, self.width, self.height, self.steps, rng.randrange(2**32), prompt(rng, 8, 40)
            )
        log.warning(
            "comfyui benchmark: ComfyUI lists no checkpoint; measuring a model-free workflow "
            "(%dx%d, %d inversions), not a model",
            self.width,
            self.height,
            self.steps,
        )
        return lambda rng: image_ops_workflow(
            self.width, self.height, self.steps, rng.randrange(MAX_COLOUR + 1)
        )

    async def run_one(
        self, backend_url: str, session: aiohttp.ClientSession, graph: dict[str, Any]
    ) -> dict[str, Any]:
        """Queue one workflow, wait for it, fetch its first image; its history entry."""
        body = {"prompt": graph, "client_id": uuid.uuid4().hex}
        async with session.post(backend_url + "/prompt", json=body) as resp:
            queued = await read_json(resp, f"POST {backend_url}/prompt", HINT)
        prompt_id = queued.get("prompt_id") if isinstance(queued, dict) else None
        if not isinstance(prompt_id, str):
            raise BackendError(f"POST {backend_url}/prompt answered no prompt_id: {queued!r}")
        entry = await wait_for_run(backend_url, session, prompt_id, self.image_timeout_s)
        for output in entry.get("outputs", {}).values():
            for image in output.get("images", []):
                params = {k: str(image.get(k, "")) for k in ("filename", "subfolder", "type")}
                async with session.get(backend_url + "/view", params=params) as resp:
                    data = await resp.read()
                    if resp.status != 200 or not data:
                        raise BackendError(f"GET {backend_url}/view answered {resp.status}")
                return entry
        raise BackendError(f"ComfyUI run {prompt_id} finished without an image")

    async def __call__(self, backend_url: str, session: aiohttp.ClientSession) -> float:
        await preload_words()
        make_graph = await self.graph_maker(backend_url, session)
        workload = image_workload(self.width, self.height, self.steps)

        async def one(rng: random.Random) -> float:
            await self.run_one(backend_url, session, make_graph(rng))
            return workload

        return await ramp(one, name="comfyui", settings=self.ramp)


DEFAULT: Final = ComfyUIBenchmark()


async def benchmark(backend_url: str, session: aiohttp.ClientSession) -> float:
    """``BENCHMARK=vespid.benchmarks.comfyui:benchmark``: image workload per second."""
    return await DEFAULT(backend_url, session)
