"""Small real servers on 127.0.0.1 for tests: the autoscaler stand-in and odd backends.

Each speaks the exact wire format of what it stands in for. They are started with
``start_app`` on an OS-chosen port and stopped by the fixture that started them.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from vespid.protocol.signing import Signer, generate_private_key, public_key_pem

__all__ = ["Autoscaler", "ScriptedBackend", "start_app"]

_KEY: rsa.RSAPrivateKey | None = None
_request_numbers = itertools.count(1)


def shared_key() -> rsa.RSAPrivateKey:
    """One RSA key for the whole test run (generating one costs ~50 ms)."""
    global _KEY
    if _KEY is None:
        _KEY = generate_private_key()
    return _KEY


@asynccontextmanager
async def start_app(app: web.Application, **runner_kwargs: Any) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 with an OS-chosen port; yields its base URL."""
    runner = web.AppRunner(app, access_log=None, **runner_kwargs)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@dataclass
class Autoscaler:
    """Stands in for the autoscaler: serves a real RSA public key and records reports."""

    key: rsa.RSAPrivateKey = field(default_factory=shared_key)
    serve_key: bool = True
    status_reports: list[dict[str, Any]] = field(default_factory=list)
    delete_reports: list[dict[str, Any]] = field(default_factory=list)
    pubkey_requests: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def signer(self) -> Signer:
        return Signer(self.key)

    def sign_for(self, url: str, cost: float = 1, **over: Any) -> dict[str, Any]:
        """A fresh vespid-signed auth_data for the worker at ``url`` (unique numbers)."""
        n = next(_request_numbers)
        return self.signer.auth_data(
            url=url, cost=cost, endpoint="e", reqnum=n, request_idx=n, **over
        )

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/pubkey/", self._pubkey)
        app.router.add_post("/worker_status/", self._status)
        app.router.add_post("/delete_requests/", self._delete)
        return app

    async def _pubkey(self, request: web.Request) -> web.Response:
        self.pubkey_requests += 1
        if not self.serve_key:
            return web.Response(status=503, text="not yet")
        return web.Response(body=public_key_pem(self.key), content_type="application/x-pem-file")

    async def _status(self, request: web.Request) -> web.Response:
        self.status_reports.append(await request.json())
        self.changed.set()
        return web.json_response({"ok": True})

    async def _delete(self, request: web.Request) -> web.Response:
        self.delete_reports.append(await request.json())
        self.changed.set()
        return web.json_response({"ok": True})

    async def wait_for(self, predicate: Any, timeout_s: float = 15.0) -> None:
        """Wait until ``predicate(self)`` holds, re-checking on every report."""
        async with asyncio.timeout(timeout_s):
            while not predicate(self):
                self.changed.clear()
                await self.changed.wait()


@dataclass
class ScriptedBackend:
    """A model-server stand-in whose behaviour each test scripts.

    Routes: ``/health`` (200 once ``healthy``), ``/echo`` (JSON echo of body, method
    and query), ``/status/<code>`` (answers that code), ``/hold`` (waits until
    ``release`` is set; records arrivals, cancellations and concurrency),
    ``/stream`` (SSE: one event, then waits for ``release``, then two more),
    ``/break`` (SSE: one event, then the connection is cut).
    """

    healthy: bool = True
    release: asyncio.Event = field(default_factory=asyncio.Event)
    arrivals: list[Any] = field(default_factory=list)
    cancelled: list[Any] = field(default_factory=list)
    active: int = 0
    max_active: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_route("*", "/echo", self._echo)
        app.router.add_post("/status/{code}", self._status)
        app.router.add_post("/hold", self._hold)
        app.router.add_post("/stream", self._stream)
        app.router.add_post("/break", self._break)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        if self.healthy:
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "loading"}, status=503)

    async def _echo(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "method": request.method,
                "query": dict(request.query),
                "body": (await request.read()).decode(),
                "content_type": request.content_type,
            }
        )

    async def _status(self, request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        return web.json_response({"error": f"status {code}"}, status=code)

    async def _hold(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.arrivals.append(body.get("n"))
        self.arrived.set()
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(body.get("n"))
            raise
        finally:
            self.active -= 1
        return web.json_response({"n": body.get("n")})

    async def _sse(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"n": 1}\n\n')
        return resp

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        resp = await self._sse(request)
        await self.release.wait()
        await resp.write(b'data: {"n": 2}\n\n')
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def _break(self, request: web.Request) -> web.StreamResponse:
        resp = await self._sse(request)
        await asyncio.sleep(0)
        assert request.transport is not None
        request.transport.abort()
        return resp

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(text="backend_requests_total 7\n", content_type="text/plain")
