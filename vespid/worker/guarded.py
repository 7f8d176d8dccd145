"""aiohttp's server with the worker's limits (``vespid.worker.limits``): every aiohttp port
of the worker is served by a ``GuardedRunner``.

aiohttp bounds the request line, each header and their number itself (its
``max_line_size``, ``max_field_size``, ``max_headers``); a ``GuardedHandler`` adds the rest:
a clock for each request's headers (408 and closed when they take longer than
``VESPID_HEADER_TIMEOUT_S``), a bound on a head's bytes in all, the connection cap, and
aiohttp's own framing errors (400, text/plain, a traceback in the log) as JSON with one
short log line. ``declared_size_middleware`` refuses headers over their limit in all and
a ``Content-Length`` over the body limit before the body is read;
``vespid.worker.intake.read_body`` bounds the time the body may take.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler

from vespid.errors import BadRequest, HTTPFacingError
from vespid.web import Handler, error_response
from vespid.worker.limits import LINGER_BYTES, LINGER_S, Limits, MalformedLog, raw_answer

__all__ = ["GuardedHandler", "GuardedRunner", "GuardedServer", "declared_size_middleware"]

IDLE_TIMEOUT_S: Final = 75.0  # a kept-alive connection with nothing to do is closed (as the front)
LINE_EXTRA: Final = 32  # a request line's method and version, beyond its target


class GuardedServer(web.Server):
    """An aiohttp ``Server`` whose connections are ``GuardedHandler``s."""

    limits: Limits
    malformed: MalformedLog

    def __call__(self) -> RequestHandler:
        return GuardedHandler(self, loop=self._loop, **self._kwargs)


class GuardedHandler(RequestHandler):
    """aiohttp's connection, with a clock on each request's headers, a bound on their
    bytes, the connection cap, and JSON framing errors."""

    def __init__(self, manager: GuardedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = manager
        self._head_clock: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._linger_left: int | None = None  # refused: bytes still read and dropped

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        limits = self._guard.limits
        if len(self._guard.connections) > limits.max_connections:
            self._refuse(limits.too_many_connections())
            return
        self._start_clock()  # a connection that never sends a whole head is closed too

    def data_received(self, data: bytes) -> None:
        if self._linger_left is not None:
            self._linger_left -= len(data)
            if self._linger_left <= 0:
                self.force_close()
            return
        # The clock runs while the handler waits for a request and bytes of one came.
        if self._head_clock is None and self._waiter is not None:
            self._start_clock()
        counted = self._request_count
        super().data_received(data)
        if self._head_clock is None:
            return
        if self._request_count != counted:
            self._stop_clock()  # a whole head arrived
            return
        self._head_bytes += len(data)
        if self._head_bytes > self._guard.limits.max_head_bytes:
            self._refuse(self._guard.limits.headers_too_large())

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_clock()
        super().connection_lost(exc)

    def _start_clock(self) -> None:
        self._head_bytes = 0
        self._head_clock = self._loop.call_later(
            self._guard.limits.header_timeout_s, self._head_late
        )

    def _stop_clock(self) -> None:
        if self._head_clock is not None:
            self._head_clock.cancel()
            self._head_clock = None

    def _head_late(self) -> None:
        self._head_clock = None
        if self._waiter is not None:  # still waiting for the request's head
            self._refuse(self._guard.limits.head_too_slow())

    def _refuse(self, exc: HTTPFacingError) -> None:
        """Answer ``exc`` outside any request, half-close, drop what still comes for
        LINGER_S, then close."""
        self._stop_clock()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self._guard.malformed(transport.get_extra_info("peername"), exc.message)
        transport.write(raw_answer(exc))
        if transport.can_write_eof():
            transport.write_eof()
        self._linger_left = LINGER_BYTES
        self._loop.call_later(LINGER_S, self.force_close)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's answer to a request it could not parse (or a handler's crash), as
        JSON; a malformed request is logged in one short line."""
        if status >= 500:
            self.log_exception("error handling request from %s", request.remote, exc_info=exc)
            error: HTTPFacingError = HTTPFacingError("internal error; see the worker's log")
        else:
            problem = message or (str(exc) if exc is not None else "bad request")
            self._guard.malformed(request.remote, problem)
            self._linger_left = LINGER_BYTES  # the connection ends here: drop what follows
            error = self._framing_error(exc, problem)
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was sent already; cannot send the error")
        response = error_response(error)
        response.force_close()
        return response

    def _framing_error(self, exc: BaseException | None, problem: str) -> HTTPFacingError:
        if isinstance(exc, LineTooLong):  # which line, only its limit tells
            limits = self._guard.limits
            if f"more than {limits.max_request_line + LINE_EXTRA} bytes" in problem:
                return limits.target_too_long()
            return limits.headers_too_large()
        if problem.startswith("Too many headers"):
            return self._guard.limits.headers_too_large()
        return BadRequest(f"malformed HTTP request: {problem}")


class GuardedRunner(web.AppRunner):
    """An ``AppRunner`` whose server is a ``GuardedServer`` with ``limits``."""

    def __init__(
        self, app: web.Application, limits: Limits, malformed: MalformedLog, **kwargs: Any
    ) -> None:
        super().__init__(
            app,
            max_line_size=limits.max_request_line + LINE_EXTRA,
            max_field_size=limits.max_header_bytes,
            max_headers=limits.max_headers,
            keepalive_timeout=IDLE_TIMEOUT_S,
            **{"handler_cancellation": True, **kwargs},
        )
        self.limits = limits
        self.malformed = malformed

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = GuardedServer
        assert isinstance(server, GuardedServer)
        server.limits = self.limits
        server.malformed = self.malformed
        return server


def declared_size_middleware(limits: Limits, max_bytes: int, setting: str) -> Any:
    """Refuse, before any of the body is read, a request whose headers are over their
    limit in all (431: aiohttp bounds each one, not their sum) or whose
    ``Content-Length`` exceeds ``max_bytes`` (413)."""

    @web.middleware
    async def declared_size(request: web.Request, handler: Handler) -> web.StreamResponse:
        head = sum(len(name) + len(value) for name, value in request.raw_headers)
        length = request.content_length
        if head > limits.max_header_bytes:
            error: HTTPFacingError = limits.headers_too_large()
        elif length is not None and length > max_bytes:
            error = limits.body_too_large(max_bytes, setting)
        else:
            return await handler(request)
        response = error_response(error)
        response.force_close()
        return response

    return declared_size
