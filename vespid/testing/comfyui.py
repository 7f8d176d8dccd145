"""A stand-in for ComfyUI's HTTP API, on its exact wire format.

Routes: ``POST /prompt`` (``{"prompt": {node_id: {"class_type", "inputs"}}, "client_id"?}``
-> ``{"prompt_id", "number", "node_errors": {}}``, or 400 with ``{"error": {"type",
"message", "details", "extra_info"}, "node_errors": {...}}``), ``GET /history/<prompt_id>``
(``{}`` until the run is finished, then ``{prompt_id: {"prompt", "outputs", "status",
"meta"}}``), ``GET /history``, ``GET /view?filename=&subfolder=&type=`` (the PNG),
``GET /queue``, ``POST /queue`` (``{"delete": [prompt_id, ...]}`` or ``{"clear": true}``:
pending runs dropped), ``POST /interrupt`` (the running workflow stops; with
``{"prompt_id"}`` only if it is that one; its history then has ``status_str`` "error"
and an ``execution_interrupted`` message), ``GET /system_stats`` and ``GET
/object_info/<node>``.

Like ComfyUI, it runs one workflow at a time, in order. It knows the nodes of the
model-free graph (``EmptyImage``, ``ImageInvert``, ``SaveImage``) and of text-to-image
(``CheckpointLoaderSimple``, ``CLIPTextEncode``, ``EmptyLatentImage``, ``KSampler``,
``VAEDecode``); a run takes ``width * height * steps * pixel_step_s`` seconds, where
steps are the KSampler's steps or the number of inversions, and saves a real PNG of the
requested size.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from aiohttp import web

from vespid.testing._common import png, serve_main

__all__ = ["ComfyUIStandIn", "main"]

MAX_RESOLUTION: Final = 16384
OUTPUT_NODES: Final = frozenset({"SaveImage", "PreviewImage"})
KNOWN_NODES: Final = frozenset(
    {
        "EmptyImage",
        "ImageInvert",
        "SaveImage",
        "PreviewImage",
        "CheckpointLoaderSimple",
        "CLIPTextEncode",
        "EmptyLatentImage",
        "KSampler",
        "VAEDecode",
    }
)


def _bad(kind: str, message: str, details: str = "", node_errors: Any = None) -> web.Response:
    body = {
        "error": {"type": kind, "message": message, "details": details, "extra_info": {}},
        "node_errors": {} if node_errors is None else node_errors,
    }
    return web.json_response(body, status=400)


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class _Job:
    prompt_id: str
    number: int
    graph: dict[str, Any]
    extra: dict[str, Any]
    outputs_to_run: list[str]


@dataclass
class ComfyUIStandIn:
    """ComfyUI's server and executor, without models or a GPU."""

    checkpoints: list[str] = field(default_factory=list)
    pixel_step_s: float = 2e-9
    history: dict[str, dict[str, Any]] = field(default_factory=dict)
    images: dict[str, bytes] = field(default_factory=dict)
    queued: list[_Job] = field(default_factory=list)
    running: _Job | None = None
    interrupted: list[str] = field(default_factory=list)  # prompt ids stopped mid-run
    _counter: int = 0
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _interrupt: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/prompt", self._prompt)
        app.router.add_get("/history", self._history_all)
        app.router.add_get("/history/{prompt_id}", self._history)
        app.router.add_get("/view", self._view)
        app.router.add_get("/queue", self._queue)
        app.router.add_post("/queue", self._queue_change)
        app.router.add_post("/interrupt", self._interrupt_run)
        app.router.add_get("/system_stats", self._system_stats)
        app.router.add_get("/object_info/{node}", self._object_info)
        app.cleanup_ctx.append(self._executor)
        return app

    async def _executor(self, app: web.Application) -> Any:
        task = asyncio.create_task(self._execute_forever())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    # -- validation --------------------------------------------------------

    def _validate(self, graph: dict[str, Any]) -> web.Response | list[str]:
        outputs: list[str] = []
        node_errors: dict[str, Any] = {}
        for node_id, node in graph.items():
            if not isinstance(node, dict) or "class_type" not in node:
                return _bad(
                    "invalid_prompt",
                    "Cannot execute because a node is missing the class_type property.",
                    f"Node ID '#{node_id}'",
                )
            kind = node["class_type"]
            if kind not in KNOWN_NODES:
                return _bad(
                    "invalid_prompt",
                    f"Cannot execute because node {kind} does not exist.",
                    f"Node ID '#{node_id}'",
                )
            inputs = node.get("inputs") or {}
            errors = []
            sized = kind in ("EmptyImage", "EmptyLatentImage")
            for name in ("width", "height"):
                value = inputs.get(name)
                if sized and isinstance(value, int) and not 1 <= value <= MAX_RESOLUTION:
                    small = value < 1
                    errors.append(
                        {
                            "type": "value_smaller_than_min" if small else "value_bigger_than_max",
                            "message": "Value smaller than min"
                            if small
                            else "Value bigger than max",
                            "details": f"{name}: {value} "
                            + ("< 1" if small else f"> {MAX_RESOLUTION}"),
                            "extra_info": {"input_name": name},
                        }
                    )
            ckpt = inputs.get("ckpt_name")
            if kind == "CheckpointLoaderSimple" and ckpt not in self.checkpoints:
                errors.append(
                    {
                        "type": "value_not_in_list",
                        "message": "Value not in list",
                        "details": f"ckpt_name: '{ckpt}' not in {self.checkpoints}",
                        "extra_info": {"input_name": "ckpt_name"},
                    }
                )
            if errors:
                node_errors[node_id] = {
                    "errors": errors,
                    "dependent_outputs": [],
                    "class_type": kind,
                }
            if kind in OUTPUT_NODES:
                outputs.append(node_id)
        if not outputs:
            return _bad("prompt_no_outputs", "Prompt has no outputs", node_errors=[])
        if node_errors:
            return _bad(
                "prompt_outputs_failed_validation",
                "Prompt outputs failed validation",
                node_errors=node_errors,
            )
        return outputs

    # -- execution ---------------------------------------------------------

    def _trace(self, graph: dict[str, Any], node_id: str) -> tuple[int, int, int, int]:
        """(width, height, steps, colour) of the image that reaches ``node_id``."""
        steps = 0
        current = node_id
        width = height = 64
        colour = 0
        inverted = False
        for _ in range(len(graph) + 1):
            node = graph[current]
            inputs = node.get("inputs") or {}
            kind = node["class_type"]
            if kind == "EmptyImage":
                width, height = inputs.get("width", 512), inputs.get("height", 512)
                colour = int(inputs.get("color", 0))
                break
            if kind == "EmptyLatentImage":
                width, height = inputs.get("width", 512), inputs.get("height", 512)
                break
            if kind == "ImageInvert":
                steps += 1
                inverted = not inverted
            if kind == "KSampler":
                steps += int(inputs.get("steps", 20))
                colour = int(inputs.get("seed", 0)) & 0xFFFFFF
            link = inputs.get("images") or inputs.get("image") or inputs.get("samples")
            link = link or inputs.get("latent_image")
            if not isinstance(link, list) or str(link[0]) not in graph:
                break
            current = str(link[0])
        if inverted:
            colour ^= 0xFFFFFF
        return int(width), int(height), max(steps, 1), colour

    async def _execute_forever(self) -> None:
        while True:
            while not self.queued:
                self._wake.clear()
                await self._wake.wait()
            job = self.queued.pop(0)
            self.running = job
            self._interrupt.clear()
            started = _now_ms()
            outputs: dict[str, Any] = {}
            for node_id in job.outputs_to_run:
                width, height, steps, colour = self._trace(job.graph, node_id)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(width * height * steps * self.pixel_step_s):
                        await self._interrupt.wait()
                if self._interrupt.is_set():
                    break
                rgb = ((colour >> 16) & 255, (colour >> 8) & 255, colour & 255)
                prefix = job.graph[node_id]["inputs"].get("filename_prefix", "ComfyUI")
                filename = f"{prefix}_{job.number + 1:05d}_.png"
                self.images[filename] = png(width, height, rgb)
                outputs[node_id] = {
                    "images": [{"filename": filename, "subfolder": "", "type": "output"}]
                }
            self.running = None
            if self._interrupt.is_set():
                self.interrupted.append(job.prompt_id)
                self.history[job.prompt_id] = {
                    "prompt": [job.number, job.prompt_id, job.graph, job.extra, job.outputs_to_run],
                    "outputs": {},
                    "status": {
                        "status_str": "error",
                        "completed": False,
                        "messages": [
                            ["execution_start", {"prompt_id": job.prompt_id, "timestamp": started}],
                            [
                                "execution_interrupted",
                                {
                                    "prompt_id": job.prompt_id,
                                    "node_id": job.outputs_to_run[0],
                                    "node_type": "SaveImage",
                                    "executed": [],
                                    "timestamp": _now_ms(),
                                },
                            ],
                        ],
                    },
                    "meta": {},
                }
                continue
            self.history[job.prompt_id] = {
                "prompt": [job.number, job.prompt_id, job.graph, job.extra, job.outputs_to_run],
                "outputs": outputs,
                "status": {
                    "status_str": "success",
                    "completed": True,
                    "messages": [
                        ["execution_start", {"prompt_id": job.prompt_id, "timestamp": started}],
                        [
                            "execution_cached",
                            {"nodes": [], "prompt_id": job.prompt_id, "timestamp": started},
                        ],
                        [
                            "execution_success",
                            {"prompt_id": job.prompt_id, "timestamp": _now_ms()},
                        ],
                    ],
                },
                "meta": {
                    node_id: {
                        "node_id": node_id,
                        "display_node": node_id,
                        "parent_node": None,
                        "real_node_id": node_id,
                    }
                    for node_id in outputs
                },
            }

    # -- routes ------------------------------------------------------------

    async def _prompt(self, request: web.Request) -> web.Response:
        try:
            body: Any = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.Response(status=400, text="400: Invalid JSON")
        graph = body.get("prompt") if isinstance(body, dict) else None
        if not isinstance(graph, dict):
            return _bad("no_prompt", "No prompt provided")
        checked = self._validate(graph)
        if isinstance(checked, web.Response):
            return checked
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        extra = {"client_id": body.get("client_id"), "create_time": _now_ms()}
        job = _Job(prompt_id, self._counter, graph, extra, checked)
        self._counter += 1
        self.queued.append(job)
        self._wake.set()
        return web.json_response({"prompt_id": prompt_id, "number": job.number, "node_errors": {}})

    async def _history(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = self.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry is not None else {})

    async def _history_all(self, request: web.Request) -> web.Response:
        return web.json_response(self.history)

    async def _view(self, request: web.Request) -> web.Response:
        name = request.query.get("filename", "")
        if request.query.get("type", "output") != "output" or name not in self.images:
            return web.Response(status=404)
        return web.Response(
            body=self.images[name],
            content_type="image/png",
            headers={"Content-Disposition": f'filename="{name}"'},
        )

    async def _queue(self, request: web.Request) -> web.Response:
        def row(job: _Job) -> list[Any]:
            return [job.number, job.prompt_id, job.graph, job.extra, job.outputs_to_run]

        running = [row(self.running)] if self.running is not None else []
        return web.json_response(
            {"queue_running": running, "queue_pending": [row(j) for j in self.queued]}
        )

    async def _queue_change(self, request: web.Request) -> web.Response:
        body: Any = orjson.loads(await request.read() or b"{}")
        if isinstance(body, dict) and body.get("clear"):
            self.queued.clear()
        if isinstance(body, dict) and isinstance(body.get("delete"), list):
            gone = set(body["delete"])
            self.queued = [job for job in self.queued if job.prompt_id not in gone]
        return web.Response(status=200)

    async def _interrupt_run(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body: Any = orjson.loads(raw) if raw else {}
        wanted = body.get("prompt_id") if isinstance(body, dict) else None
        if self.running is not None and wanted in (None, self.running.prompt_id):
            self._interrupt.set()
        return web.Response(status=200)

    async def _system_stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "system": {
                    "os": "posix",
                    "comfyui_version": "0.3.75",
                    "python_version": "3.11",
                    "embedded_python": False,
                },
                "devices": [{"name": "cpu", "type": "cpu", "index": None}],
            }
        )

    async def _object_info(self, request: web.Request) -> web.Response:
        node = request.match_info["node"]
        if node not in KNOWN_NODES:
            return web.json_response({})
        info: dict[str, Any] = {"input": {"required": {}}, "name": node, "output_node": False}
        if node == "CheckpointLoaderSimple":
            info["input"]["required"]["ckpt_name"] = [list(self.checkpoints), {}]
            info["output"] = ["MODEL", "CLIP", "VAE"]
        return web.json_response({node: info})


def main() -> None:
    serve_main("comfyui", 8188, lambda _: ComfyUIStandIn().app())


if __name__ == "__main__":
    main()
