"""The examples/openai client run right after the worker: it waits while the worker
loads, saying so in one line, and gives up in one line (no traceback) after its
deadline."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from examples.openai import client
from tests.support.servers import start_app
from tests.worker.conftest import MakeWorker, RunningWorker


class LateServer:
    """An OpenAI-compatible stand-in whose /health answers 503 until ``healthy``."""

    def __init__(self) -> None:
        self.healthy = False

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_post("/v1/completions", self._complete)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": self.healthy}, status=200 if self.healthy else 503)

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for n in range(body["max_tokens"]):
            await resp.write(b'data: {"choices": [{"text": "t%d "}]}\n\n' % n)
        await resp.write(b"data: [DONE]\n\n")
        return resp


@pytest.fixture
async def late() -> AsyncIterator[tuple[LateServer, str]]:
    server = LateServer()
    async with start_app(server.app()) as url:
        yield server, url


@pytest.fixture
async def loading_worker(make_worker: MakeWorker, late: tuple[LateServer, str]) -> RunningWorker:
    return await make_worker(
        wait_ready=False,
        BACKEND_URL=late[1],
        UNSECURED="true",
        HEALTHCHECK_ENDPOINT="/health",
        VESPID_MAX_PERF="10",
        VESPID_READY_WAIT_S="0.1",
    )


async def test_client_waits_for_a_loading_worker_and_says_so(
    loading_worker: RunningWorker,
    late: tuple[LateServer, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client, "READY_POLL_S", 0.05)
    task = asyncio.create_task(client.complete(loading_worker.url, "Once", max_tokens=3))
    err = ""
    async with asyncio.timeout(10):
        while "waiting" not in err:
            await asyncio.sleep(0.02)
            err += capsys.readouterr().err
    assert not task.done()
    (line,) = err.splitlines()  # one line, however many 503s it took
    assert line.startswith(
        f"{loading_worker.url}: worker is still loading: waiting for {late[1]}/health"
        " answered 503 ("
    )
    late[0].healthy = True
    assert await asyncio.wait_for(task, 10) == ["t0 ", "t1 ", "t2 "]


async def test_client_gives_up_in_one_line(
    loading_worker: RunningWorker, late: tuple[LateServer, str]
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "examples.openai.client", loading_worker.url, "Once",
        "--ready-timeout-s", "0.3",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert out == b""
    lines = err.decode().splitlines()
    assert not any("Traceback" in line for line in lines)
    assert lines[-1].startswith(
        f"the worker is still not ready: worker is still loading: waiting for {late[1]}/health"
        " answered 503 ("
    )
    assert lines[-1].endswith("(gave up after 0.3 s)")
