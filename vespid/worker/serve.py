"""Serving a worker: its HTTP server on the worker port (the lean front where it applies,
else aiohttp alone), until told to stop or asked for a rolling update."""

from __future__ import annotations

import asyncio
import logging
import ssl

from aiohttp import web

from vespid.worker.app import Worker
from vespid.worker.front import Front
from vespid.worker.settings import WorkerSettings

__all__ = ["serve", "start_front"]

log = logging.getLogger("vespid.worker")


def _ssl_context(settings: WorkerSettings) -> ssl.SSLContext | None:
    if not settings.use_ssl:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(settings.ssl_cert_file, settings.ssl_key_file)
    return ctx


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
    worker.front = front
    return front


async def serve(
    settings: WorkerSettings, *, stop: asyncio.Event | None = None, worker: Worker | None = None
) -> None:
    """Run a worker (``worker``, or one made from ``settings``) until ``stop`` is set."""
    if settings.unsecured:
        log.warning("!" * 72)
        log.warning("UNSECURED=true: signatures are NOT checked. Never expose this worker.")
        if settings.raw_requests:
            log.warning("VESPID_RAW_REQUESTS=true: any body is served, with no auth_data at all.")
        log.warning("!" * 72)
    worker = worker or Worker(settings)
    runner = web.AppRunner(worker.build_app(), access_log=None, handler_cancellation=True)
    await runner.setup()
    front = await start_front(worker, runner)
    if front is None:
        site = web.TCPSite(
            runner, settings.host, settings.worker_port, ssl_context=_ssl_context(settings)
        )
        await site.start()
    log.info(
        "worker listening",
        extra={
            "fields": {
                "host": settings.host,
                "port": settings.worker_port,
                "backend": worker.settings.backend_url,
            }
        },
    )
    stop = stop or asyncio.Event()
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(worker.update.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if worker.update.is_set():
            log.info("rolling update asked for: finishing in-flight requests, then exiting")
    finally:
        for wait in waits:
            wait.cancel()
        if front is not None:
            await front.shutdown()
        await runner.cleanup()
