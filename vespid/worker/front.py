"""The worker's listening socket: a lean HTTP/1.1 front for the passthrough's hot path.

aiohttp's server costs about 50 µs of CPU per request (its Request and Response
objects, routing, the handler task). The front serves the one request that is sent
in volume, ``POST /<path>`` with a Content-Length body, straight off an asyncio
Protocol (``vespid.worker.front_connection``), and hands aiohttp every other request
with its connection. It sees only a ``FrontTarget`` (the pipeline, the backend, two
settings), never the worker's internals. TLS (``USE_SSL``) and the null worker are
served by aiohttp alone.

Here: the listener, the sweep (every second, or more often with a short
``VESPID_HEADER_TIMEOUT_S``) that closes idle kept-alive connections and refuses
requests whose head or body is late (408), and the shutdown that lets requests in
progress finish. The sweep costs the hot path nothing: no timer per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiohttp import web

from vespid.worker.front_connection import FrontConnection
from vespid.worker.front_writer import FrontState, FrontTarget

__all__ = ["Front"]


class Front:
    """The listening socket's protocol factory and the connections it serves."""

    def __init__(self, target: FrontTarget, aiohttp_server: web.Server) -> None:
        self.state = FrontState(target, aiohttp_server)
        self.connections = self.state.connections
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.port: int | None = None

    def __call__(self) -> FrontConnection:
        return FrontConnection(self.state)

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self, host, port, reuse_address=True)
        bound: int = self._server.sockets[0].getsockname()[1]
        self.port = bound
        self._sweeper = loop.create_task(self._sweep())
        return bound

    async def _sweep(self) -> None:
        """Close kept-alive connections idle for the limits' ``idle_timeout_s`` (as the
        guarded aiohttp ports do), and refuse requests that arrive too slowly, so no
        client holds a socket for long."""
        period = min(1.0, self.state.limits.header_timeout_s / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            self.close_idle(now)
            self.close_overdue(now)

    def close_overdue(self, now: float) -> int:
        """Refuse (408, then close) requests whose head or body is late at ``now``; how many."""
        late = [(conn, exc) for conn in self.connections if (exc := conn.overdue(now))]
        for conn, exc in late:
            conn.refuse(exc)
        return len(late)

    def close_idle(self, now: float) -> int:
        """Close connections with no request for ``idle_timeout_s`` before ``now``; how many."""
        deadline = now - self.state.limits.idle_timeout_s
        idle = [
            conn
            for conn in self.connections
            if conn.task is None and not conn.in_message and conn.last_active < deadline
        ]
        for conn in idle:
            conn.close()
        return len(idle)

    async def shutdown(self, timeout_s: float = 60.0) -> None:
        """Stop listening, let requests in progress finish (up to ``timeout_s``), close."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._server is not None:
            self._server.close()
        busy = [c.task for c in self.connections if c.task is not None]
        for conn in list(self.connections):
            if conn.task is None:
                conn.close()
        if busy:
            await asyncio.wait(busy, timeout=timeout_s)
        for conn in list(self.connections):
            conn.close()
        if self._server is not None:
            await self._server.wait_closed()
