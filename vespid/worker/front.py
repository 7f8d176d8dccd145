"""The worker's listening socket: a lean HTTP/1.1 front for the passthrough's hot path.

aiohttp's server costs about 50 µs of CPU per request (its Request and Response
objects, routing, the handler task). The front serves the one request that is sent
in volume, ``POST /<path>`` with a Content-Length body, straight off an asyncio
Protocol: ``httptools`` (llhttp) parses the request, the worker's own checks, books
and backend client do the rest, and the answer is written to the transport.

Anything else is handed to aiohttp with the connection: the worker's own routes
(``/metrics``, ``/session/*``, ``/pyworker/update``), other methods, HTTP/1.0,
``Expect``, ``Transfer-Encoding`` (chunked bodies), ``Upgrade``, a body over the size
limit (aiohttp answers the worker's 413), a target aiohttp would normalise or decode,
and bytes the parser refuses. The hand-off happens once every request before it on
that connection has been answered: aiohttp's ``RequestHandler`` gets the transport and
every byte from the first byte of the request it takes, and keeps the connection to
its end. TLS (``USE_SSL``) and the null worker are served by aiohttp alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Final, NamedTuple, cast

import httptools
import orjson
from aiohttp import web

from vespid.errors import HTTPFacingError
from vespid.protocol.wire import UPDATE_PATH, dumps, parse_worker_request
from vespid.worker.backend_client import BackendClientError, BackendResponse
from vespid.worker.books import Outcome
from vespid.worker.proxy import HOP_BY_HOP, backend_error_for

if TYPE_CHECKING:
    from vespid.worker.app import Worker

__all__ = ["Front", "FrontConnection"]

log = logging.getLogger("vespid.worker")

# Paths the worker answers itself (aiohttp routes them); a POST to any other is passed on.
OWN_PATHS: Final = frozenset(
    {
        b"/metrics",
        b"/metrics/backend",
        UPDATE_PATH.encode(),
        b"/session/create",
        b"/session/get",
        b"/session/health",
        b"/session/end",
    }
)
# A kept-alive connection with nothing to do is closed after this long (aiohttp's 75 s).
IDLE_TIMEOUT_S: Final = 75.0
# Request headers that send a request to aiohttp.
UNUSUAL_HEADERS: Final = frozenset({b"expect", b"transfer-encoding", b"upgrade"})
# Request targets aiohttp would decode or normalise before forwarding: left to it.
UNUSUAL_TARGET: Final = (b"%", b"/.", b"//", b"#", b"\\")
BACKEND_HEADERS: Final = {"Content-Type": "application/json"}
JSON_TYPE: Final = b"application/json"
MAX_QUEUED: Final = 16  # pipelined requests parsed ahead before reading pauses
SSE_BROKEN: Final = (
    b'event: error\ndata: {"error": "backend stream broke", "code": "backend_error"}\n\n'
)


class _HandOff(Exception):
    """Raised from a parser callback: this request is aiohttp's."""


class _Request(NamedTuple):
    target: bytes
    body: bytes
    keep_alive: bool
    started: float


class _Reasons(dict[int, bytes]):
    def __missing__(self, status: int) -> bytes:
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        line = f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")
        self[status] = line
        return line


_STATUS_LINES: Final = _Reasons()


class _Date:
    """The Date header's line, made once a second."""

    def __init__(self) -> None:
        self._second = 0
        self._line = b""

    def line(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._line = f"Date: {email.utils.formatdate(now, usegmt=True)}\r\n".encode()
        return self._line


class _Counter:
    """Parser callbacks that only count finished messages (to find where one ends)."""

    def __init__(self) -> None:
        self.done = 0

    def on_message_complete(self) -> None:
        self.done += 1


def message_end(raw: bytes | bytearray, n: int) -> int:
    """The offset in ``raw`` just past its ``n``-th complete request (n >= 1).

    Found by parsing prefixes with a fresh parser (a binary search): the parser does
    not tell where a message ends. Only needed when a request for aiohttp follows
    requests served here in one stretch of input, which is rare.
    """
    lo, hi = 1, len(raw)
    while lo < hi:
        mid = (lo + hi) // 2
        counter = _Counter()
        # An error past the n-th message is for aiohttp to answer.
        with contextlib.suppress(httptools.HttpParserError):
            httptools.HttpRequestParser(counter).feed_data(bytes(raw[:mid]))
        if counter.done >= n:
            hi = mid
        else:
            lo = mid + 1
    return lo


class Front:
    """The listening socket's protocol factory and the connections it serves."""

    def __init__(self, worker: Worker, aiohttp_server: web.Server) -> None:
        self.worker = worker
        self.aiohttp_server = aiohttp_server
        self.max_body = worker.settings.max_body_bytes
        self.date = _Date()
        self.connections: set[FrontConnection] = set()
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.port: int | None = None

    def __call__(self) -> FrontConnection:
        return FrontConnection(self)

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self, host, port, reuse_address=True)
        bound: int = self._server.sockets[0].getsockname()[1]
        self.port = bound
        self._sweeper = loop.create_task(self._sweep_idle())
        return bound

    async def _sweep_idle(self) -> None:
        """Close kept-alive connections idle for IDLE_TIMEOUT_S (as aiohttp does), so idle
        clients cannot hold sockets open forever."""
        while True:
            await asyncio.sleep(IDLE_TIMEOUT_S / 5)
            self.close_idle(time.monotonic())

    def close_idle(self, now: float) -> int:
        """Close connections with no request for IDLE_TIMEOUT_S before ``now``; how many."""
        deadline = now - IDLE_TIMEOUT_S
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


class FrontConnection(asyncio.Protocol):
    """One client connection, until it ends or is handed to aiohttp."""

    def __init__(self, front: Front) -> None:
        self.front = front
        self.worker = front.worker
        self.task: asyncio.Task[None] | None = None
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._raw = bytearray()  # input since the parser was last between two requests
        self._done_in_raw = 0  # requests completed within _raw
        self._in_message = False
        self._hand_off_at: int | None = None  # offset in _raw where aiohttp takes over
        self._queue: deque[_Request] = deque()
        self._reading_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._writing_paused = False
        self._lost = False
        # the request being parsed
        self._target = b""
        self._body: list[bytes] = []
        self._length: int | None = None
        self._unusual = False
        self._started = 0.0
        self.last_active = time.monotonic()

    @property
    def in_message(self) -> bool:
        return self._in_message

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.front.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        self._raw += data
        if self._hand_off_at is not None:
            return  # aiohttp will get it
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            # _HandOff from a callback, or input llhttp refuses (aiohttp answers 400),
            # or an upgrade: aiohttp takes the connection from this request's first byte.
            self._hand_off_at = (
                message_end(self._raw, self._done_in_raw) if self._done_in_raw else 0
            )
            self._pause_reading()
            self._maybe_hand_off()
        else:
            if not self._in_message:
                self._raw.clear()
                self._done_in_raw = 0
            if len(self._queue) >= MAX_QUEUED:
                self._pause_reading()
        if self._queue and self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._serve())

    def eof_received(self) -> bool | None:
        return None  # close our side too; a request in progress is cancelled

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.front.connections.discard(self)
        self._queue.clear()
        if self.task is not None:
            self.task.cancel()  # the client went away: so does its backend call
        self._wake_writer()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake_writer()

    # -- httptools callbacks -------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_message = True
        self._target = b""
        self._body = []
        self._length = None
        self._unusual = False
        self._started = time.monotonic()

    def on_url(self, url: bytes) -> None:
        self._target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length":
            self._length = int(value) if value.isdigit() else -1
        elif name in UNUSUAL_HEADERS:
            self._unusual = True

    def on_headers_complete(self) -> None:
        target = self._target
        if (
            self._unusual
            or self._parser.get_method() != b"POST"
            or self._parser.get_http_version() != "1.1"
            or self._length is None
            or not 0 <= self._length <= self.front.max_body
            or not target.startswith(b"/")
            or any(s in target for s in UNUSUAL_TARGET)
            or target.split(b"?", 1)[0] in OWN_PATHS
        ):
            raise _HandOff

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        self._done_in_raw += 1
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._body = []
        self._queue.append(
            _Request(self._target, body, self._parser.should_keep_alive(), self._started)
        )

    # -- serving -------------------------------------------------------------

    async def _serve(self) -> None:
        try:
            while self._queue and not self._lost:
                request = self._queue.popleft()
                if self._reading_paused and self._hand_off_at is None:
                    self._resume_reading()
                await self._answer(request)
                if not request.keep_alive:
                    self.close()
                    return
        except asyncio.CancelledError:
            self.close()  # cancelled mid-answer (client gone, session ended): cut it
            raise
        finally:
            self.task = None
            self.last_active = time.monotonic()
            if not self._lost:
                self._maybe_hand_off()

    async def _answer(self, request: _Request) -> None:
        worker = self.worker
        target = request.target.decode("latin-1")
        path = target.split("?", 1)[0]
        try:
            parsed = parse_worker_request(request.body)
            session = await worker.accept(parsed.auth, parsed.session_id)
            payload = dumps(parsed.payload)
        except HTTPFacingError as exc:
            worker.metrics.count_request(exc.status_code, "refused")
            worker.log_request(
                "POST", path, exc.status_code, "refused", None, request.started, exc.message
            )
            self._error(exc, request.keep_alive)
            return
        auth = parsed.auth
        ticket = worker.books.receive(auth.request_idx, auth.cost, is_session=session is not None)
        task = self.task
        if session is not None and task is not None:
            session.requests.add(task)
        status = 499
        outcome: Outcome | None = Outcome.CANCELLED
        try:
            await worker.admission.enter(ticket)
            try:
                status, outcome = await self._relay(target, payload, request)
            finally:
                worker.admission.leave(ticket)
        except HTTPFacingError as exc:
            status, outcome = exc.status_code, None
            self._error(exc, request.keep_alive)
        finally:
            if session is not None and task is not None:
                session.requests.discard(task)
            recorded = worker.books.finish(ticket, status, outcome)
            worker.log_request("POST", path, status, recorded.value, auth, request.started, None)

    async def _relay(
        self, target: str, body: bytes, request: _Request
    ) -> tuple[int, Outcome | None]:
        proxy = self.worker.proxy
        try:
            resp = await proxy.client.request("POST", target, BACKEND_HEADERS, body)
        except (TimeoutError, BackendClientError) as exc:
            raise backend_error_for(exc, proxy.base_url + target) from exc
        try:
            if resp.content_length is not None:
                try:
                    data = await resp.read()
                except (TimeoutError, BackendClientError) as exc:
                    raise backend_error_for(exc, proxy.base_url + target) from exc
                self._write_whole(resp.status, resp.headers, data, request.keep_alive)
                return resp.status, None
            return await self._stream(resp, request.keep_alive)
        finally:
            resp.release()

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
        parts = [_STATUS_LINES[status]]
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP:
                parts.append(b"%b: %b\r\n" % (name, value))
        parts.append(self.front.date.line())
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

    def _error(self, exc: HTTPFacingError, keep_alive: bool) -> None:
        self._write_whole(
            exc.status_code, [(b"Content-Type", JSON_TYPE)], orjson.dumps(exc.body()), keep_alive
        )

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    # -- flow control and the hand-off -----------------------------------------

    def _pause_reading(self) -> None:
        if not self._reading_paused and self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()

    def _maybe_hand_off(self) -> None:
        """Give the connection to aiohttp once every request before its turn is answered."""
        at = self._hand_off_at
        transport = self._transport
        if at is None or self.task is not None or self._queue or transport is None:
            return
        if transport.is_closing():
            return
        self.front.connections.discard(self)
        handler = self.front.aiohttp_server()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        rest = bytes(self._raw[at:])
        self._raw = bytearray()
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()
        if rest:
            handler.data_received(rest)
