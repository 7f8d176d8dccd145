"""A ComfyUI route that answers when the image is made: ``POST /prompt/wait``.

Passed through, ComfyUI's ``POST /prompt`` answers as soon as the workflow is queued,
so the worker would book the image as served and free its slot while ComfyUI is still
working: admission (``ALLOW_PARALLEL=false``), the load it reports and the books would
all be wrong. ``POST /prompt/wait`` takes the same body (``{"prompt": {node_id: ...},
"client_id"?}``), queues it with ComfyUI, polls ``/history/<prompt_id>`` until the run
is over and answers ``{"prompt_id", "outputs", "status"}`` (the history entry; fetch the
images with ``GET /view`` as usual). Meanwhile the request holds its place: the worker
counts its workload as in progress, and as served only when the image exists.

A graph ComfyUI refuses comes back as ComfyUI answered it (400 with ``node_errors``,
a client error). A run that fails (a node raises, or it is interrupted) is a 502 naming
the node and ComfyUI's message, counted as an error; one not finished within
``timeout_s`` (600 s) a 504. A client that goes away takes its run with it: a queued
run is deleted, a running one interrupted.

``VESPID_HANDLERS=vespid.handlers.comfyui:handler``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

import aiohttp
from aiohttp import web

from vespid.benchmarks.comfyui import wait_for_run
from vespid.errors import BackendError, PayloadInvalid
from vespid.handlers.base import BackendCall, Handler, relay
from vespid.protocol.wire import dumps

__all__ = ["ComfyUIWait", "handler"]

log = logging.getLogger("vespid.worker")

CLEANUP_TIMEOUT_S: Final = 5.0


class ComfyUIWait(Handler[dict[str, Any]]):
    """Queue a workflow with ComfyUI, answer with its outputs once it has run."""

    def __init__(self, path: str = "/prompt/wait", *, timeout_s: float = 600.0) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self._cleanups: set[asyncio.Task[None]] = set()

    def parse(self, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise PayloadInvalid(
                'the payload must be ComfyUI\'s /prompt body: {"prompt": {node_id: {...}}}',
                fields={"payload": "expected an object"},
            )
        graph = payload.get("prompt")
        if not isinstance(graph, dict) or not graph:
            raise PayloadInvalid(
                "payload.prompt must be a workflow in ComfyUI's API format "
                '({node_id: {"class_type": ..., "inputs": {...}}})',
                fields={"payload.prompt": "missing" if graph is None else "expected an object"},
            )
        return payload

    def backend_call(self, value: dict[str, Any], path_qs: str) -> BackendCall:
        return BackendCall("/prompt", dumps(value))

    async def respond(
        self, request: web.Request, backend: aiohttp.ClientResponse, value: dict[str, Any]
    ) -> web.StreamResponse:
        if backend.status != 200:
            return await relay(request, backend)  # ComfyUI's own refusal, unchanged
        queued: Any = await backend.json(content_type=None)
        prompt_id = queued.get("prompt_id") if isinstance(queued, dict) else None
        if not isinstance(prompt_id, str):
            raise BackendError(f"ComfyUI's /prompt answered no prompt_id: {str(queued)[:200]}")
        base = str(backend.url).removesuffix("/prompt")
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
            try:
                entry = await wait_for_run(base, session, prompt_id, self.timeout_s)
            except asyncio.CancelledError:
                # The client went away: so does its run. Done apart, since this task is
                # being cancelled.
                task = asyncio.create_task(_drop_run(base, prompt_id))
                self._cleanups.add(task)
                task.add_done_callback(self._cleanups.discard)
                raise
        return web.json_response(
            {"prompt_id": prompt_id, "outputs": entry.get("outputs", {}), "status": entry["status"]}
        )


async def _drop_run(base: str, prompt_id: str) -> None:
    """Delete ``prompt_id`` from ComfyUI's queue, or interrupt it if it is running."""
    try:
        async with (
            asyncio.timeout(CLEANUP_TIMEOUT_S),
            aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session,
        ):
            async with session.get(base + "/queue") as resp:
                queue: Any = await resp.json(content_type=None)
            running = [row[1] for row in queue.get("queue_running", []) if len(row) > 1]
            if prompt_id in running:
                async with session.post(base + "/interrupt", json={"prompt_id": prompt_id}):
                    pass
                log.info("ComfyUI run %s interrupted: its client went away", prompt_id)
            else:
                async with session.post(base + "/queue", json={"delete": [prompt_id]}):
                    pass
                log.info("ComfyUI run %s dropped from the queue: its client went away", prompt_id)
    except (TimeoutError, aiohttp.ClientError, ValueError, AttributeError, TypeError) as exc:
        log.warning("could not drop ComfyUI run %s after its client left: %s", prompt_id, exc)


handler: Final = ComfyUIWait()
