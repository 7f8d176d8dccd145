"""The one connection guard (``vespid.guard``): the private fields of aiohttp's it reads
are still there and still mean what it takes them to mean, and the task server's port is
guarded as the others are (aiohttp's own 400 was text/plain there)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web

from tests.control.attack import raw_exchange, read_answer
from tests.support.waiting import wait_until
from vespid.guard import (
    ConnectionLimits,
    GuardedHandler,
    GuardedRunner,
    GuardedServer,
    MalformedLog,
)
from vespid.guard.server import (
    AIOHTTP_CHECKED,
    AIOHTTP_PRIVATE,
    LINE_EXTRA,
    requests_parsed,
    waiting_for_request,
)
from vespid.tasks.presets import parse_presets
from vespid.tasks.runner import TaskRunner
from vespid.tasks.server import TaskServer

CHANGED = (
    f"aiohttp {aiohttp.__version__} changed {{}}; vespid.guard.server was checked against "
    f"aiohttp {AIOHTTP_CHECKED}: read the new aiohttp's web_protocol.py and web_server.py "
    "and update the functions that read it"
)


@pytest.fixture
async def held() -> AsyncIterator[tuple[GuardedRunner, asyncio.Event, asyncio.Event]]:
    """A guarded app on 127.0.0.1 whose ``GET /hold`` waits for ``release`` once
    ``entered`` is set."""
    entered, release = asyncio.Event(), asyncio.Event()

    async def hold(request: web.Request) -> web.Response:
        entered.set()
        await release.wait()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/hold", hold)
    limits = ConnectionLimits(max_request_line_bytes=1000)
    runner = GuardedRunner(app, limits, MalformedLog(logging.getLogger("test")), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield runner, entered, release
    finally:
        release.set()
        await runner.cleanup()


async def test_the_private_fields_of_aiohttps_the_guard_reads_mean_what_it_reads(
    held: tuple[GuardedRunner, asyncio.Event, asyncio.Event],
) -> None:
    runner, entered, release = held
    server = runner.server
    assert isinstance(server, GuardedServer), CHANGED.format("AppRunner._make_server")
    assert server._kwargs["max_line_size"] == 1000 + LINE_EXTRA, CHANGED.format("Server._kwargs")
    reader, writer = await asyncio.open_connection("127.0.0.1", runner.addresses[0][1])
    try:
        await wait_until(lambda: len(server.connections) == 1)
        handler = server.connections[0]
        assert isinstance(handler, GuardedHandler), CHANGED.format("Server.__call__")
        owners: dict[type, object] = {web.AppRunner: runner, web.Server: server}
        for cls, names in AIOHTTP_PRIVATE.items():
            owner = owners.get(cls, handler)
            for name in names:
                assert hasattr(owner, name), CHANGED.format(f"{cls.__name__}.{name}")
        assert handler._loop is asyncio.get_running_loop(), CHANGED.format("_loop")
        # A fresh connection: nothing parsed, the handler's loop waits for a request.
        await wait_until(lambda: waiting_for_request(handler))
        assert requests_parsed(handler) == 0, CHANGED.format("RequestHandler._request_count")
        writer.write(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(10):
            await entered.wait()
        # A request in hand: counted, and no longer waited for.
        assert requests_parsed(handler) == 1, CHANGED.format("RequestHandler._request_count")
        assert not waiting_for_request(handler), CHANGED.format("RequestHandler._waiter")
        release.set()
        async with asyncio.timeout(10):
            assert (await read_answer(reader)).status == 200
        # Answered and kept alive: waiting for the next one.
        await wait_until(lambda: waiting_for_request(handler))
    finally:
        writer.close()


async def test_the_task_servers_port_answers_malformed_requests_as_json(tmp_path: Path) -> None:
    text = yaml.safe_dump({"models": {"m": {"inference": {"command": ["true"]}}}})
    presets = await asyncio.to_thread(parse_presets, text, tmp_path / "presets.yaml")
    runner = TaskRunner(
        presets, gpus=["0"], queue_size=1, max_wait_s=5, timeout_s=60, docker_cli="",
        environ=os.environ, stop_grace_s=0.3,
    )  # fmt: skip
    server = TaskServer(runner, limits=ConnectionLimits(max_headers=10))
    url = await server.start()
    try:
        answer = await raw_exchange(url, b"GET /tasks HTTP/1.1\r\nHost: x\r\nNo colon\r\n\r\n")
        assert (answer.status, answer.json()["code"]) == (400, "bad_request")
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(20))
        answer = await raw_exchange(url, b"GET /tasks HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        assert (answer.status, answer.json()["code"]) == (431, "headers_too_large")
        answer = await raw_exchange(url, b"GET /tasks HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.status == 200  # and it still serves
    finally:
        await server.stop()
