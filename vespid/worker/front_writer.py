"""The lean front's shared state and its writing half (``vespid.worker.front_connection``
is the reading half): what the front needs of the worker (``FrontTarget``), what its
connections share (``FrontState``), and ``FrontWriter``, which writes answers whole or
relays a backend's stream chunk by chunk with backpressure."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from aiohttp import web

from vespid.guard import ConnectionLimits, MalformedLog
from vespid.web import HOP_BY_HOP
from vespid.worker.backend_client import BackendClientError, BackendResponse
from vespid.worker.books import Outcome
from vespid.worker.http11 import STATUS_LINES, DateLine
from vespid.worker.pipeline import Pipeline
from vespid.worker.proxy import SSE_BROKEN, BackendProxy

__all__ = ["FrontState", "FrontTarget", "FrontWriter"]

log = logging.getLogger("vespid.worker")


class FrontTarget(Protocol):
    """What the front needs of the worker it serves, and nothing more (as uvicorn's
    protocol needs only its ASGI app): the pipeline, the backend, two settings."""

    @property
    def pipeline(self) -> Pipeline: ...

    @property
    def proxy(self) -> BackendProxy: ...

    @property
    def own_paths(self) -> frozenset[bytes]:
        """Paths the worker answers itself: requests for them go to aiohttp."""
        ...

    @property
    def max_body_bytes(self) -> int: ...

    @property
    def limits(self) -> ConnectionLimits: ...

    @property
    def malformed(self) -> MalformedLog: ...


class FrontState:
    """What every connection of one front shares (as uvicorn's ServerState)."""

    __slots__ = (
        "aiohttp_server", "connections", "date", "limits", "max_body", "max_head",
        "max_header_bytes", "max_headers", "max_line", "own_paths", "target",
    )  # fmt: skip

    def __init__(self, target: FrontTarget, aiohttp_server: web.Server) -> None:
        self.target = target
        self.aiohttp_server = aiohttp_server
        self.max_body = target.max_body_bytes
        limits = self.limits = target.limits
        self.max_line = limits.max_request_line_bytes
        self.max_header_bytes = limits.max_header_bytes
        self.max_headers = limits.max_headers
        self.max_head = limits.max_head_bytes
        self.own_paths = target.own_paths
        self.date = DateLine()
        self.connections: set[Any] = set()  # the FrontConnections


class FrontWriter(asyncio.Protocol):
    """The writing half of one front connection: flow control, answers, streams."""

    _state: FrontState
    _transport: asyncio.Transport | None
    _lost: bool
    _writing_paused: bool
    _drained: asyncio.Future[None] | None

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake_writer()

    async def _stream(self, resp: BackendResponse, keep_alive: bool) -> tuple[int, Outcome | None]:
        transport = self._transport
        assert transport is not None
        transport.write(
            self._head(resp.status, resp.headers, b"Transfer-Encoding: chunked\r\n", keep_alive)
        )
        try:
            while chunk := await resp.read_chunk():
                if self._lost or transport.is_closing():
                    return 499, Outcome.CANCELLED
                transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                await self._drain()  # waits while the client's buffer is full
        except (TimeoutError, BackendClientError) as exc:
            # Headers are gone already: tell an SSE client in-band, then cut the
            # connection without the final chunk so any HTTP client sees the break.
            log.warning("backend stream broke: %s", exc)
            if resp.content_type == "text/event-stream" and not transport.is_closing():
                transport.write(b"%x\r\n%b\r\n" % (len(SSE_BROKEN), SSE_BROKEN))
            self.close()
            return 502, Outcome.ERROR
        if self._lost or transport.is_closing():
            # Gone at the last chunk: it has the whole body, so this is still a success.
            return resp.status, None
        transport.write(b"0\r\n\r\n")
        return resp.status, None

    async def _drain(self) -> None:
        while self._writing_paused and not self._lost:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained

    def _wake_writer(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    # -- writing -------------------------------------------------------------

    def _head(
        self, status: int, headers: list[tuple[bytes, bytes]], framing: bytes, keep_alive: bool
    ) -> bytes:
        parts = [STATUS_LINES[status]]
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP:
                parts.append(b"%b: %b\r\n" % (name, value))
        parts.append(self._state.date.line())
        parts.append(framing)
        if not keep_alive:
            parts.append(b"Connection: close\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    def _write_whole(
        self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, keep_alive: bool
    ) -> None:
        if self._transport is None or self._lost:
            return
        head = self._head(status, headers, b"Content-Length: %d\r\n" % len(body), keep_alive)
        self._transport.write(head + body)

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
