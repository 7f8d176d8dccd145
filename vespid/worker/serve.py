"""Running a worker: its task backend (with ``VESPID_TASKS``), the Worker, its servers
(the lean front on the worker port where it applies, else aiohttp alone; the
plain-HTTP ``/session/end`` port; the null worker's 127.0.0.1 control port), and a
clean stop in the reverse order, until told to stop, asked for a rolling update, or
orphaned (``vespid.worker.orphan``: ``serve`` then raises ``Orphaned``)."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from vespid.guard import ConnectionLimits, GuardedRunner
from vespid.handlers.base import Handler
from vespid.tasks.presets import load_presets
from vespid.tasks.runner import TaskRunner
from vespid.tasks.server import TaskServer
from vespid.types import BenchmarkFunction
from vespid.worker.app import Worker
from vespid.worker.front import Front
from vespid.worker.null import CONTROL_HOST, build_control_app
from vespid.worker.settings import WorkerSettings

__all__ = [
    "ORPHANED_EXIT_CODE",
    "Orphaned",
    "ServedWorker",
    "running_worker",
    "serve",
    "start_front",
    "start_task_backend",
]

log = logging.getLogger("vespid.worker")


ORPHANED_EXIT_CODE = 3


class Orphaned(SystemExit):
    """The worker stopped itself: its control plane stopped answering its reports. A
    SystemExit, so ``vespid worker`` exits with ``ORPHANED_EXIT_CODE`` and no traceback."""


@dataclass(frozen=True, slots=True)
class ServedWorker:
    """A worker and where it listens, while ``running_worker``'s block runs."""

    worker: Worker
    port: int  # the worker port
    front: Front | None  # the lean front on it, unless aiohttp serves it alone
    session_end: web.AppRunner  # /session/end over plain HTTP
    control: web.AppRunner | None  # the null worker's control server
    tasks: TaskServer | None  # the task backend, with VESPID_TASKS

    @property
    def http_port(self) -> int:
        port: int = self.session_end.addresses[0][1]
        return port

    @property
    def control_port(self) -> int | None:
        if self.control is None:
            return None
        port: int = self.control.addresses[0][1]
        return port


def _ssl_context(settings: WorkerSettings) -> ssl.SSLContext | None:
    if not settings.use_ssl:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(settings.ssl_cert_file, settings.ssl_key_file)
    return ctx


async def start_task_backend(settings: WorkerSettings) -> tuple[TaskServer, WorkerSettings]:
    """Start the task server for a worker; returns it and the worker's settings pointed at it.

    Unless told otherwise, the worker checks ``/health`` and takes the number of slots
    as its throughput, so ``auth_data.cost`` reads as seconds of one GPU's time.
    """
    assert settings.tasks is not None
    presets = await asyncio.to_thread(load_presets, settings.tasks)
    runner = TaskRunner(
        presets,
        gpus=settings.gpus,
        queue_size=settings.task_queue_size,
        max_wait_s=settings.max_wait_time_s,
        timeout_s=settings.task_timeout_s,
        docker_cli=settings.docker,
        environ=os.environ,  # only SAFE_ENV and DOCKER_ENV pass on to the programs
        stop_grace_s=settings.task_stop_grace_s,
    )
    server = TaskServer(
        runner,
        limits=ConnectionLimits.of(settings),
        answer_max_bytes=settings.task_answer_max_bytes,
    )
    url = await server.start()
    slots = float(len(runner.pool.devices))
    updated = settings.model_copy(
        update={
            "backend_url": url,
            "healthcheck_endpoint": settings.healthcheck_endpoint or "/health",
            "max_perf": settings.max_perf or (None if settings.benchmark else slots),
        }
    )
    return server, updated


async def start_front(worker: Worker, runner: web.AppRunner) -> Front | None:
    """Listen on the worker port with the lean front (``vespid.worker.front``), which
    hands aiohttp every request but the passthrough's; None where aiohttp serves the
    port alone (TLS, the null worker, a worker with handlers or routes of its own, raw
    requests), for the caller to start a TCPSite."""
    settings = worker.settings
    custom = bool(worker.handlers or worker.routes) or settings.raw_requests
    if settings.use_ssl or settings.backend == "null" or custom or runner.server is None:
        return None
    front = Front(worker, runner.server)
    await front.start(settings.host, settings.worker_port)
    return front


async def _guarded_runner(
    stack: AsyncExitStack, worker: Worker, app: web.Application
) -> web.AppRunner:
    """``app`` set up behind the worker's connection guard, cleaned up when the stack closes."""
    runner = GuardedRunner(
        app, worker.limits, worker.malformed, access_log=None, handler_cancellation=True
    )
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    return runner


async def _serve_side(
    stack: AsyncExitStack, worker: Worker, app: web.Application, host: str, port: int
) -> web.AppRunner:
    """Serve a small extra app, with the worker's limits, until the stack closes."""
    runner = await _guarded_runner(stack, worker, app)
    await web.TCPSite(runner, host, port).start()
    return runner


async def _serve_main(stack: AsyncExitStack, worker: Worker) -> tuple[int, Front | None]:
    """Serve the worker port until the stack closes; the port and the front, if any."""
    settings = worker.settings
    runner = await _guarded_runner(stack, worker, worker.build_app())
    front = await start_front(worker, runner)
    if front is not None:
        stack.push_async_callback(front.shutdown)  # first: requests in progress finish
        assert front.port is not None
        return front.port, front
    site = web.TCPSite(
        runner, settings.host, settings.worker_port, ssl_context=_ssl_context(settings)
    )
    await site.start()
    port: int = runner.addresses[0][1]
    return port, None


@asynccontextmanager
async def running_worker(
    settings: WorkerSettings,
    *,
    handlers: Sequence[Handler[Any]] = (),
    routes: Sequence[web.RouteDef] = (),
    benchmark: BenchmarkFunction | None = None,
) -> AsyncIterator[ServedWorker]:
    """A worker serving on its ports until the block exits. With ``VESPID_TASKS`` the task
    backend starts first, so the Worker is built with the settings pointed at it."""
    async with AsyncExitStack() as stack:
        tasks: TaskServer | None = None
        if settings.tasks is not None:
            tasks, settings = await start_task_backend(settings)
            stack.push_async_callback(tasks.stop)
        worker = Worker(settings, handlers=handlers, routes=routes, benchmark=benchmark)
        stack.push_async_callback(worker.close)
        worker.start()
        session_end = await _serve_side(
            stack, worker, worker.build_session_end_app(), settings.host, settings.http_port
        )
        control = None
        if settings.backend == "null":
            control = await _serve_side(
                stack,
                worker,
                build_control_app(worker.sessions, settings),
                CONTROL_HOST,
                settings.null_control_port,
            )
        port, front = await _serve_main(stack, worker)
        served = ServedWorker(worker, port, front, session_end, control, tasks)
        # A session's callback never calls the worker's own ports.
        own = {port, served.http_port, served.control_port}
        worker.sessions.routes.own_ports.update(p for p in own if p is not None)
        yield served


def _warn_if_unsecured(settings: WorkerSettings) -> None:
    if settings.unsecured:
        log.warning("!" * 72)
        log.warning("UNSECURED=true: signatures are NOT checked. Never expose this worker.")
        if settings.raw_requests:
            log.warning("VESPID_RAW_REQUESTS=true: any body is served, with no auth_data at all.")
        log.warning("!" * 72)


async def serve(
    settings: WorkerSettings,
    *,
    stop: asyncio.Event | None = None,
    handlers: Sequence[Handler[Any]] = (),
    routes: Sequence[web.RouteDef] = (),
    benchmark: BenchmarkFunction | None = None,
) -> None:
    """Run a worker until ``stop`` is set or a rolling update is asked for; Orphaned
    once it stopped itself for VESPID_ORPHAN_TIMEOUT (the caller exits non-zero)."""
    _warn_if_unsecured(settings)
    async with running_worker(
        settings, handlers=handlers, routes=routes, benchmark=benchmark
    ) as served:
        worker = served.worker
        log.info(
            "worker listening",
            extra={
                "fields": {
                    "host": settings.host,
                    "port": served.port,
                    "backend": worker.settings.backend_url,
                }
            },
        )
        stop = stop or asyncio.Event()
        events = (stop, worker.update, worker.orphaned)
        waits = [asyncio.ensure_future(event.wait()) for event in events]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if worker.update.is_set():
                log.info("rolling update asked for: finishing in-flight requests, then exiting")
        finally:
            for wait in waits:
                wait.cancel()
    if worker.orphaned.is_set():
        raise Orphaned(ORPHANED_EXIT_CODE)
