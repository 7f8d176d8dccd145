"""Orphan safety: a worker whose control plane stops answering stops its model server and
itself within VESPID_ORPHAN_TIMEOUT; a pid whose start time differs is left alone. And
the load a report says waits for a backend slot under a concurrency limit."""

from __future__ import annotations

import asyncio
import os
import sys

import aiohttp
import pytest
from aiohttp import web

from tests.support.servers import ScriptedBackend, start_app
from tests.support.waiting import wait_until
from tests.worker.conftest import MakeWorker, envelope
from vespid.servers.process import ChildProcess, free_port, process_start_time, wait_http
from vespid.worker.serve import ORPHANED_EXIT_CODE

TIMEOUT_S = 1.0


class Scaler:
    """A control plane that answers reports until told to go quiet."""

    def __init__(self) -> None:
        self.answering = True
        self.reports = 0

    async def report(self, request: web.Request) -> web.Response:
        await request.read()
        self.reports += 1
        return web.json_response({}, status=200 if self.answering else 503)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/worker_status/", self.report)
        app.router.add_post("/delete_requests/", self.report)
        return app


async def run_worker(env: dict[str, str]) -> asyncio.subprocess.Process:
    full = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        "UNSECURED": "true",
        "VESPID_MAX_PERF": "1",
        "WORKER_PORT": str(free_port()),
        "WORKER_HTTP_PORT": str(free_port()),
        "VESPID_HOST": "127.0.0.1",
        "VESPID_ORPHAN_TIMEOUT": str(TIMEOUT_S),
        "VESPID_LOG_LEVEL": "warning",
        **env,
    }
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "vespid.worker", env=full)


@pytest.mark.parametrize("own", [True, False])
async def test_an_orphaned_worker_stops_its_vllm_process_and_itself(
    vllm_process: tuple[ChildProcess, str], own: bool
) -> None:
    server, url = vllm_process
    assert server.pid is not None
    start = await asyncio.to_thread(process_start_time, server.pid)
    assert start is not None
    scaler = Scaler()
    async with start_app(scaler.app()) as scaler_url:
        worker = await run_worker(
            {
                "BACKEND_URL": url,
                "REPORT_ADDR": scaler_url,
                "VESPID_MODEL_PID": str(server.pid),
                # Another start time: the pid is not provably the model server.
                "VESPID_MODEL_PID_START": str(start if own else start + 1),
            }
        )
        try:
            await wait_until(lambda: scaler.reports >= 1, timeout_s=30)
            scaler.answering = False
            # The bound: the timeout, plus the model server's stop grace and start-up slack.
            code = await asyncio.wait_for(worker.wait(), TIMEOUT_S + 15)
        finally:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
    assert code == ORPHANED_EXIT_CODE
    if own:
        assert await asyncio.wait_for(_reaped(server), 10) is not None
    else:
        assert server.returncode is None
        await wait_http(url + "/health", timeout_s=5)  # still serving


async def _reaped(server: ChildProcess) -> int | None:
    return await server.stop(grace_s=0.0) if server.returncode is None else server.returncode


async def test_a_worker_keeps_serving_and_comes_back_while_reports_fail(
    make_worker: MakeWorker, backend: tuple[ScriptedBackend, str], http: aiohttp.ClientSession
) -> None:
    """Reports that fail are retried every second; requests are served meanwhile."""
    _, backend_url = backend
    scaler = Scaler()
    async with start_app(scaler.app()) as scaler_url:
        worker = await make_worker(
            BACKEND_URL=backend_url, REPORT_ADDR=scaler_url, UNSECURED="true",
            VESPID_MAX_PERF="1",
        )  # fmt: skip
        reporter = worker.worker.reporter
        await wait_until(lambda: reporter.sent >= 1)
        scaler.answering = False
        await wait_until(lambda: reporter.failed >= 2)  # retried without waiting 10 s
        auth = {"cost": 1, "endpoint": "e", "reqnum": 1, "request_idx": 1, "signature": "",
                "url": ""}  # fmt: skip
        async with http.post(worker.url + "/echo", json=envelope(auth, {})) as resp:
            assert resp.status == 200
        scaler.answering = True
        sent = reporter.sent
        await wait_until(lambda: reporter.sent > sent)


async def test_waiting_load_is_the_part_without_a_backend_slot(
    make_worker: MakeWorker, backend: tuple[ScriptedBackend, str], http: aiohttp.ClientSession
) -> None:
    stand_in, backend_url = backend
    worker = await make_worker(
        BACKEND_URL=backend_url, UNSECURED="true", VESPID_MAX_PERF="1000",
        VESPID_MAX_CONCURRENCY="2",
    )  # fmt: skip
    tasks = []
    for i, cost in enumerate((1, 2, 4, 8), start=1):
        auth = {"cost": cost, "endpoint": "e", "reqnum": i, "request_idx": i, "signature": "",
                "url": ""}  # fmt: skip
        tasks.append(asyncio.create_task(http.post(worker.url + "/hold", json=envelope(auth, {}))))
        await wait_until(lambda n=i: len(worker.worker.books.working) == n)  # type: ignore[misc]
    books = worker.worker.books
    await wait_until(lambda: len(stand_in.arrivals) == 2)
    report = await worker.worker.reporter.status_report(books.take_counters())
    assert (report.cur_load, report.waiting_load, report.parked) == (15, 12, False)
    stand_in.release.set()
    for resp in await asyncio.gather(*tasks):
        assert resp.status == 200
        resp.release()
    report = await worker.worker.reporter.status_report(books.take_counters())
    assert (report.cur_load, report.waiting_load) == (0, 0)
