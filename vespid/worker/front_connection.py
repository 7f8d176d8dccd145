"""One client connection of the lean front (``vespid.worker.front``): an asyncio
Protocol that parses requests with ``httptools`` (llhttp), takes each through the
worker's pipeline (``vespid.worker.pipeline``) and its backend client, and writes the
answer to the transport.

It serves ``POST /<path>`` with a Content-Length body. Anything else is handed to
aiohttp with the connection: the worker's own routes (``FrontTarget.own_paths``),
other methods, HTTP/1.0, ``Expect``, ``Transfer-Encoding`` (chunked bodies),
``Upgrade``, a target aiohttp would normalise or decode, and bytes the parser refuses.
The hand-off happens once every request before it on that connection has been
answered: aiohttp's ``RequestHandler`` gets the transport and every byte from the first
byte of the request it takes, and keeps the connection to its end.

It refuses itself, with the limits of ``vespid.guard``: a request target or
headers over their limits (414, 431: counted in the parser's callbacks, and the bytes of
an unfinished head in ``data_received``, so a huge header is never buffered whole), a
``Content-Length`` over the body limit (413, from the header), and, when the front's
sweep finds it overdue, a head or body that arrives too slowly (408). A refusal is
answered once the requests before it are, and closes the connection; nothing more is
read or kept meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Final, NamedTuple, cast

import httptools

from vespid.errors import HTTPFacingError
from vespid.guard import LINGER_BYTES, LINGER_S, raw_answer
from vespid.protocol.wire import dumps, parse_worker_request
from vespid.web import JSON_HEADERS, JSON_TYPE, error_body
from vespid.worker.backend_client import BackendClientError
from vespid.worker.books import Outcome
from vespid.worker.front_writer import FrontState, FrontWriter
from vespid.worker.http11 import message_end
from vespid.worker.pipeline import Flight
from vespid.worker.proxy import backend_error_for

__all__ = ["FrontConnection"]

log = logging.getLogger("vespid.worker")

# Request headers that send a request to aiohttp.
UNUSUAL_HEADERS: Final = frozenset({b"expect", b"transfer-encoding", b"upgrade"})
# Request targets aiohttp would decode or normalise before forwarding: left to it.
UNUSUAL_TARGET: Final = (b"%", b"/.", b"//", b"#", b"\\")
ERROR_HEADERS: Final = [(b"Content-Type", JSON_TYPE.encode())]
MAX_QUEUED: Final = 16  # pipelined requests parsed ahead before reading pauses


class _HandOff(Exception):
    """Raised from a parser callback: this request is aiohttp's."""


class _Refuse(Exception):
    """Raised from a parser callback: this request is refused (``FrontConnection.refusal``)."""


class _Request(NamedTuple):
    target: bytes
    body: bytes
    keep_alive: bool
    started: float


class FrontConnection(FrontWriter):
    """One client connection, until it ends or is handed to aiohttp."""

    def __init__(self, state: FrontState) -> None:
        self._state = state
        self._pipeline = state.target.pipeline
        self._proxy = state.target.proxy
        self._parse_auth = self._pipeline.parse_auth
        self.task: asyncio.Task[None] | None = None
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._raw = bytearray()  # input since the parser was last between two requests
        self._done_in_raw = 0  # requests completed within _raw
        self._in_message = False
        self._hand_off_at: int | None = None  # offset in _raw where aiohttp takes over
        self.refusal: HTTPFacingError | None = None  # answered, then the connection closes
        self._linger_left = LINGER_BYTES
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
        self._head_done = False
        self._head_size = 0  # bytes of the target and the headers parsed so far
        self._head_count = 0
        self._head_raw = 0  # bytes received since the chunk in which the head began
        self.last_active = time.monotonic()
        self.served_any = False

    @property
    def in_message(self) -> bool:
        return self._in_message

    def overdue(self, now: float) -> HTTPFacingError | None:
        """The 408 for a request whose head or body is late at ``now`` (or for a new
        connection that sent nothing for as long), if it is."""
        if self.refusal is not None:
            return None
        limits = self._state.limits
        if not self._in_message:
            fresh = not self.served_any and self.task is None
            late = fresh and now - self.last_active > limits.header_timeout_s
            return limits.head_too_slow() if late else None
        if not self._head_done:
            late = now - self._started > limits.header_timeout_s
            return limits.head_too_slow() if late else None
        late = now - self._started > limits.header_timeout_s + limits.body_timeout_s
        return limits.body_too_slow() if late else None

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        connections = self._state.connections
        if len(connections) >= self._state.limits.max_connections:
            self._transport.write(raw_answer(self._state.limits.too_many_connections()))
            self._transport.close()
            return
        connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        if self.refusal is not None:
            self._linger_left -= len(data)  # refused: read and dropped, for a moment
            if self._linger_left <= 0:
                self.close()
            return
        if self._in_message and not self._head_done:
            # A head that began in an earlier chunk: bound the bytes llhttp would buffer.
            self._head_raw += len(data)
            if self._head_raw > self._state.max_head:
                self.refuse(self._state.limits.headers_too_large())
                return
        self._raw += data
        if self._hand_off_at is not None:
            return  # aiohttp will get it
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            refusal = self._refused()
            if refusal is not None:
                self.refuse(refusal)  # raised by a callback
            else:
                self._hand_off_after_error()
        else:
            if not self._in_message:
                self._raw.clear()
                self._done_in_raw = 0
            if len(self._queue) >= MAX_QUEUED:
                self._pause_reading()
        if self._queue and self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._serve())

    def _hand_off_after_error(self) -> None:
        """_HandOff from a callback, input llhttp refuses (aiohttp answers 400), or an
        upgrade: aiohttp takes the connection from this request's first byte."""
        self._hand_off_at = message_end(self._raw, self._done_in_raw) if self._done_in_raw else 0
        self._pause_reading()
        self._maybe_hand_off()

    def eof_received(self) -> bool | None:
        return None  # close our side too; a request in progress is cancelled

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._state.connections.discard(self)
        self._queue.clear()
        if self.task is not None:
            self.task.cancel()  # the client went away: so does its backend call
        self._wake_writer()

    # -- httptools callbacks -------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_message = True
        self._target = b""
        self._body = []
        self._length = None
        self._unusual = False
        self._started = time.monotonic()
        self.served_any = True
        self._head_done = False
        self._head_size = self._head_count = self._head_raw = 0

    def on_url(self, url: bytes) -> None:
        self._target += url
        if len(self._target) > self._state.max_line:
            self._refuse_in_parser(self._state.limits.target_too_long())

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_count += 1
        self._head_size += len(name) + len(value)
        state = self._state
        if self._head_size > state.max_header_bytes or self._head_count > state.max_headers:
            self._refuse_in_parser(state.limits.headers_too_large())
        name = name.lower()
        if name == b"content-length":
            self._length = int(value) if value.isdigit() else -1
        elif name in UNUSUAL_HEADERS:
            self._unusual = True

    def on_headers_complete(self) -> None:
        self._head_done = True
        target = self._target
        if self._length is not None and self._length > self._state.max_body:
            self._refuse_in_parser(
                self._state.limits.body_too_large(self._state.max_body, "VESPID_MAX_BODY_BYTES")
            )
        if (
            self._unusual
            or self._parser.get_method() != b"POST"
            or self._parser.get_http_version() != "1.1"
            or self._length is None
            or self._length < 0
            or not target.startswith(b"/")
            or any(s in target for s in UNUSUAL_TARGET)
            or target.split(b"?", 1)[0] in self._state.own_paths
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
                if self._reading_paused and self._hand_off_at is None and not self.refusal:
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
        target = request.target.decode("latin-1")
        try:
            async with Flight(self._pipeline, "POST", target, request.started) as flight:
                parsed = parse_worker_request(request.body, self._parse_auth)
                auth = parsed.auth
                await flight.accept(auth, parsed.session_id)
                payload = dumps(parsed.payload)
                await flight.admit(auth.cost)
                status, outcome = await self._relay(target, payload, request)
                flight.done(status, outcome)
        except HTTPFacingError as exc:
            self._write_whole(exc.status_code, ERROR_HEADERS, error_body(exc), request.keep_alive)
        except Exception:
            # A bug, not the client's doing: logged whole, answered, never a hung client.
            log.exception("request to %s failed in the worker", target)
            error = HTTPFacingError("internal error; see the worker's log")
            self._write_whole(500, ERROR_HEADERS, error_body(error), False)
            self.close()

    async def _relay(
        self, target: str, body: bytes, request: _Request
    ) -> tuple[int, Outcome | None]:
        proxy = self._proxy
        try:
            resp = await proxy.client.request("POST", target, JSON_HEADERS, body)
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

    # -- flow control and the hand-off -----------------------------------------

    def _pause_reading(self) -> None:
        if not self._reading_paused and self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()

    def _refused(self) -> HTTPFacingError | None:
        return self.refusal  # (read anew: a parser callback may have set it)

    def _refuse_in_parser(self, exc: HTTPFacingError) -> None:
        self.refusal = exc
        raise _Refuse

    def refuse(self, exc: HTTPFacingError) -> None:
        """Refuse the request being read with ``exc``: read and keep nothing more, answer
        it once the requests before it are answered, then close."""
        self.refusal = exc
        self._raw = bytearray()
        self._body = []
        self._pause_reading()
        transport = self._transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        self._state.target.malformed(peer[0] if peer else None, exc.message)
        self._maybe_hand_off()

    def _answer_refusal(self, transport: asyncio.Transport, refusal: HTTPFacingError) -> None:
        """Answer, half-close, drop what still comes for LINGER_S, then close."""
        transport.write(raw_answer(refusal))
        if transport.can_write_eof():
            transport.write_eof()
        self._resume_reading()
        asyncio.get_running_loop().call_later(LINGER_S, self.close)

    def _maybe_hand_off(self) -> None:
        """Give the connection to aiohttp (or answer its refusal and close) once every
        request before its turn is answered."""
        at = self._hand_off_at
        transport = self._transport
        if self.task is not None or self._queue or transport is None:
            return
        if transport.is_closing():
            return
        if self.refusal is not None:
            self._answer_refusal(transport, self.refusal)
            return
        if at is None:
            return
        self._state.connections.discard(self)
        handler = self._state.aiohttp_server()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        rest = bytes(self._raw[at:])
        self._raw = bytearray()
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()
        if rest:
            handler.data_received(rest)
