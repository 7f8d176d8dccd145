"""The task server: a small HTTP app over the runner, which the worker uses as its backend.

With ``VESPID_TASKS`` set, the worker starts this app in-process on 127.0.0.1 with
an OS-chosen port and makes it its ``BACKEND_URL``, so signatures, admission,
metrics and client-disconnect cancellation work as for any model server.

Routes:

- ``POST /tasks/<model>``: run one task; the JSON object posted is its input. The
  answer is an SSE stream, one message per event (``event:`` its type, ``data:`` the
  event as the program printed it), or, when the input has ``"stream": false``, one
  JSON object with every event, the final status and text. 404 for an unknown model,
  422 for an input that is not a JSON object (or not UTF-8, or nested too deep), 429
  when no GPU is free in time, 503 when the model needs Docker and there is none, 502
  when the program cannot start, 507 (and the task stopped) when the events of a
  ``"stream": false`` task pass ``answer_max_bytes`` (``VESPID_TASK_ANSWER_MAX_BYTES``).
- ``GET /tasks``: the models, the GPUs and the queue. ``GET /health``: 200.
  ``GET /metrics``: Prometheus text (the worker's ``/metrics/backend``).

Its port is guarded as the worker's are (``vespid.guard``, with the worker's limits):
aiohttp's own refusals and malformed requests are JSON too, logged in one short line.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import orjson
from aiohttp import web

from vespid.errors import AnswerTooLarge, NotFound, RequestInvalid
from vespid.guard import ConnectionLimits, GuardedRunner, MalformedLog, guard_middlewares
from vespid.tasks.runner import RunningTask, TaskRunner
from vespid.web import JSON_TYPE, json_response, read_body

__all__ = ["TASK_ID_HEADER", "TaskServer"]

TASK_ID_HEADER: Final = "X-Vespid-Task-Id"
SSE_HEADERS: Final = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
SHUTDOWN_TIMEOUT_S: Final = 2.0
ANSWER_MAX_BYTES: Final = 64 * 1024 * 1024  # VESPID_TASK_ANSWER_MAX_BYTES's default
MAX_BODY_BYTES: Final = 1 << 30  # the worker in front limits bodies

log = logging.getLogger("vespid.tasks")


class TaskServer:
    """The app, its runner, and where it listens once started."""

    def __init__(
        self,
        runner: TaskRunner,
        *,
        limits: ConnectionLimits | None = None,
        answer_max_bytes: int = ANSWER_MAX_BYTES,
    ) -> None:
        self.runner = runner
        self.limits = limits or ConnectionLimits()  # the worker's, when it starts this
        self.malformed = MalformedLog(log)
        self.answer_max_bytes = answer_max_bytes  # of events a "stream": false task keeps
        self.url = ""
        self._app_runner: web.AppRunner | None = None

    def build_app(self) -> web.Application:
        middlewares = guard_middlewares(
            self.limits, MAX_BODY_BYTES, "the task server's limit", read_bodies=True
        )
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=middlewares)
        app.router.add_post("/tasks/{model}", self.handle_task)
        app.router.add_get("/tasks", self.handle_list)
        app.router.add_get("/health", self.handle_health)
        app.router.add_get("/metrics", self.handle_metrics)
        app.router.add_route("*", "/{path:.*}", self.handle_unknown)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start the runner and listen; returns the base URL."""
        await self.runner.start()
        # handler_cancellation: a client that goes away cancels its handler, which stops
        # the task's program and frees its GPU.
        app_runner = GuardedRunner(
            self.build_app(),
            self.limits,
            self.malformed,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        )
        await app_runner.setup()
        self._app_runner = app_runner
        site = web.TCPSite(app_runner, host, port)
        await site.start()
        bound_host, bound_port = app_runner.addresses[0][:2]
        self.url = f"http://{bound_host}:{bound_port}"
        return self.url

    async def stop(self) -> None:
        if self._app_runner is not None:
            await self._app_runner.cleanup()
            self._app_runner = None
        await self.runner.close()

    # -- routes ------------------------------------------------------------

    async def handle_task(self, request: web.Request) -> web.StreamResponse:
        payload = await _read_input(request)
        stream = payload.get("stream", True)
        if not isinstance(stream, bool):
            raise RequestInvalid("stream must be true or false", fields={"stream": "not bool"})
        task = self.runner.task(request.match_info["model"], payload)
        if stream:
            return await self._stream(request, task)
        return await self._collect(task)

    async def _stream(self, request: web.Request, task: RunningTask) -> web.StreamResponse:
        response = web.StreamResponse(headers={**SSE_HEADERS, TASK_ID_HEADER: task.id})
        try:
            async with task:  # errors before this point are plain JSON answers
                await response.prepare(request)
                while (event := await task.next_event()) is not None:
                    await response.write(event.sse())
            # The program has exited or is idle again, and its GPU is back in the pool.
            await response.write_eof()
        except ConnectionError:  # the client went away; the task was stopped on the way out
            pass
        return response

    async def _collect(self, task: RunningTask) -> web.Response:
        events: list[dict[str, Any]] = []
        deltas: list[str] = []
        text: str | None = None
        size = 0
        async with task:
            while (event := await task.next_event()) is not None:
                size += len(event.raw)
                if size > self.answer_max_bytes:
                    raise await self._too_large(task)
                events.append(event.data)
                if event.type == "text_delta":
                    deltas.append(event.data["delta"])
                elif event.type == "text":
                    text = event.data["content"]
        assert task.finish is not None
        result = {
            "task_id": task.id,
            "model": task.preset.name,
            "status": task.finish.data["status"],
            "text": text if text is not None else "".join(deltas) if deltas else None,
            "finish": task.finish.data,
            "events": events,
        }
        return web.Response(
            body=orjson.dumps(result), content_type=JSON_TYPE, headers={TASK_ID_HEADER: task.id}
        )

    async def _too_large(self, task: RunningTask) -> AnswerTooLarge:
        """Stop a task whose events outgrow what one answer may hold; the error to send."""
        limit = self.answer_max_bytes
        message = (
            f'the task\'s events passed {limit} bytes, the most a "stream": false task may '
            "collect (VESPID_TASK_ANSWER_MAX_BYTES), so it was stopped; ask with "
            '"stream": true to get its events as they come, or raise the limit'
        )
        await task.fail("answer_too_large", message)
        return AnswerTooLarge(
            message, task_id=task.id, limit_bytes=limit, setting="VESPID_TASK_ANSWER_MAX_BYTES"
        )

    async def handle_list(self, request: web.Request) -> web.Response:
        runner = self.runner
        models = {
            name: {"runs_as": runner.runs_as(preset), "session": preset.inference.session}
            for name, preset in runner.presets.models.items()
        }
        pool = runner.pool
        body = {
            "models": models,
            "gpus": runner.gpus,
            "free": len(pool.free),
            "busy": pool.busy,
            "idle_sessions": len(pool.idle),
            "queued": pool.queued,
            "queue_size": pool.queue_size,
            "docker": runner.docker,
        }
        return json_response(body)

    async def handle_health(self, request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def handle_metrics(self, request: web.Request) -> web.Response:
        pool, metrics = self.runner.pool, self.runner.metrics
        metrics.busy.set(pool.busy)
        metrics.idle_sessions.set(len(pool.idle))
        metrics.queue_depth.set(pool.queued)
        return web.Response(body=metrics.render(), content_type="text/plain")

    async def handle_unknown(self, request: web.Request) -> web.Response:
        raise NotFound(f"no route {request.method} {request.path}; tasks are POST /tasks/<model>")


async def _read_input(request: web.Request) -> dict[str, Any]:
    body = await read_body(request)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestInvalid(
            f"the task input is not valid JSON ({exc}); send one UTF-8 JSON object",
            fields={"payload": "JSON"},
        ) from None
    if not isinstance(payload, dict):
        raise RequestInvalid(
            "the task input must be a JSON object", fields={"payload": "not an object"}
        )
    return payload
