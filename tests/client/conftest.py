"""Client fixtures: the router stand-in, real workers before a scripted backend, a client.

The worker fixtures (``make_worker``, ``autoscaler``, ``http`` and the autouse
``blockbuster`` and ``no_leaked_tasks`` checks) are the worker suite's own,
re-exported here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from tests.support.router import RecordingProxy, Router
from tests.support.servers import Autoscaler, ScriptedBackend, start_app
from tests.worker.conftest import (  # noqa: F401 - fixtures, found by name
    MakeWorker,
    RunningWorker,
    autoscaler,
    blockbuster,
    http,
    make_worker,
    no_leaked_tasks,
)
from vespid.client import Client

# A PNG signature and a few bytes that are not valid UTF-8.
IMAGE = b"\x89PNG\r\n\x1a\n\x00\xff\xfe" + bytes(range(256))


async def _image(request: web.Request) -> web.Response:
    return web.Response(body=IMAGE, content_type="image/png")


@pytest.fixture
async def backend() -> AsyncIterator[tuple[ScriptedBackend, str]]:
    """The worker suite's scripted backend, plus ``/image`` (a binary answer)."""
    stand_in = ScriptedBackend()
    app = stand_in.app()
    app.router.add_post("/image", _image)
    async with start_app(app, handler_cancellation=True) as url:
        yield stand_in, url
        stand_in.release.set()


@dataclass
class Stack:
    """A router stand-in, its autoscaler (key and reports), a backend, and workers."""

    router: Router
    url: str
    scaler: Autoscaler
    scaler_url: str
    backend: ScriptedBackend
    backend_url: str
    make_worker: MakeWorker
    first: RunningWorker
    exits: AsyncExitStack

    async def worker(self, **env: str) -> RunningWorker:
        """Another real worker before the scripted backend."""
        return await self.make_worker(
            BACKEND_URL=self.backend_url,
            REPORT_ADDR=self.scaler_url,
            VESPID_MAX_PERF="100",
            **env,
        )

    def client(
        self, *, base_url: str | None = None, api_key: str | None = None, **options: Any
    ) -> Client:
        """A client of the router stand-in (or ``base_url``) with the account key (or
        ``api_key``) and fast polling (50 ms cap)."""
        options.setdefault("max_poll_interval_s", 0.05)
        options.setdefault("timeout_s", 10.0)
        return Client(base_url or self.url, api_key or self.router.account_key, **options)

    async def proxy(
        self, target: RunningWorker
    ) -> tuple[RecordingProxy, str, Callable[[], Awaitable[None]]]:
        """A recording proxy before ``target``: (proxy, its url, a coroutine that stops it)."""
        proxy = RecordingProxy(target.url)
        own = AsyncExitStack()
        url = await own.enter_async_context(start_app(proxy.app()))
        self.exits.push_async_callback(own.aclose)
        return proxy, url, own.aclose


@pytest.fixture
async def stack(
    make_worker: MakeWorker,  # noqa: F811
    autoscaler: tuple[Autoscaler, str],  # noqa: F811
    backend: tuple[ScriptedBackend, str],
) -> AsyncIterator[Stack]:
    scaler, scaler_url = autoscaler
    stand_in, backend_url = backend
    router = Router(scaler.signer)
    async with start_app(router.app()) as url, AsyncExitStack() as exits:
        first = await make_worker(
            BACKEND_URL=backend_url, REPORT_ADDR=scaler_url, VESPID_MAX_PERF="100"
        )
        router.workers.append(first.url)
        yield Stack(
            router, url, scaler, scaler_url, stand_in, backend_url, make_worker, first, exits
        )
