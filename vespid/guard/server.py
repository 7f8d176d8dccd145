"""aiohttp's server with ``ConnectionLimits``: ``GuardedRunner`` serves an app with
``GuardedServer``, whose connections are ``GuardedHandler``s.

aiohttp bounds the request line, each header and their number itself (its
``max_line_size``, ``max_field_size``, ``max_headers``, set from the limits); a
``GuardedHandler`` adds the rest: a clock on each request's head (408 when it takes
longer than ``header_timeout_s``), a bound on a head's raw bytes, the connection cap
(503), and aiohttp's own framing errors (400 text/plain with a traceback in the log) as
JSON with one short line in the ``MalformedLog``. A refusal made outside a request is a
``raw_answer``; the connection is then half-closed and lingers (``LINGER_S``,
``LINGER_BYTES``) so that a client still sending gets it.

The fields of aiohttp's that are not public are used here and nowhere else: see
``AIOHTTP_PRIVATE``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from vespid.errors import BadRequest, HTTPFacingError
from vespid.guard.limits import LINGER_BYTES, LINGER_S, ConnectionLimits, MalformedLog, raw_answer
from vespid.web import error_response, json_response

__all__ = [
    "AIOHTTP_CHECKED",
    "AIOHTTP_PRIVATE",
    "LINE_EXTRA",
    "GuardedHandler",
    "GuardedRunner",
    "GuardedServer",
    "requests_parsed",
    "waiting_for_request",
]

LINE_EXTRA: Final = 32  # a request line's method and version, beyond its target

# -- aiohttp's private fields, in this one place -------------------------------------
# Checked against aiohttp 3.14.5; tests/security/test_guard.py fails loudly when one of
# them is gone or changes its meaning. RequestHandler: ``_waiter`` (the future its loop
# awaits while no request is queued), ``_request_count`` (requests parsed on the
# connection), ``_loop``. Server: ``_loop`` and ``_kwargs`` (what each handler is made
# with). AppRunner: ``_make_server`` (where a runner builds its Server).
AIOHTTP_CHECKED: Final = "3.14.5"
AIOHTTP_PRIVATE: Final = {
    RequestHandler: ("_waiter", "_request_count", "_loop"),
    web.Server: ("_loop", "_kwargs"),
    web.AppRunner: ("_make_server",),
}


def waiting_for_request(handler: RequestHandler) -> bool:
    """Whether the connection's loop waits for a request (none is queued or running)."""
    return handler._waiter is not None


def requests_parsed(handler: RequestHandler) -> int:
    """How many request heads the connection has parsed whole."""
    count: int = handler._request_count
    return count


class GuardedServer(web.Server):
    """An aiohttp ``Server`` whose connections are ``GuardedHandler``s."""

    limits: ConnectionLimits
    malformed: MalformedLog

    def __call__(self) -> RequestHandler:
        return GuardedHandler(self, loop=self._loop, **self._kwargs)


class GuardedRunner(web.AppRunner):
    """An ``AppRunner`` whose server is a ``GuardedServer`` with ``limits``, logging its
    refusals to ``malformed``. Its app should have ``guard_middlewares``."""

    def __init__(
        self,
        app: web.Application,
        limits: ConnectionLimits,
        malformed: MalformedLog,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            app,
            max_line_size=limits.max_request_line_bytes + LINE_EXTRA,
            max_field_size=limits.max_header_bytes,
            max_headers=limits.max_headers,
            keepalive_timeout=limits.idle_timeout_s,
            lingering_time=LINGER_S,  # what is left of a refused body: read and dropped
            **kwargs,
        )
        self.limits = limits
        self.malformed = malformed

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = GuardedServer
        assert isinstance(server, GuardedServer)
        server.limits = self.limits
        server.malformed = self.malformed
        server.request_handler = _refusals_as_json(server.request_handler)
        return server


def framework_refusal(exc: web.HTTPException) -> web.Response:
    """One of aiohttp's own refusals as JSON ``{"error", "code"}`` with its status."""
    code = exc.reason.lower().replace(" ", "_")
    response = json_response({"error": exc.text or exc.reason, "code": code}, exc.status)
    if "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    if exc.status == 413:
        response.force_close()  # the rest of the body is not read
    return response


def _refusals_as_json(
    handle: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    """An app's request handler whose refusals made before any middleware runs (aiohttp's
    ``Expect`` check: 417) are JSON too."""

    async def handle_as_json(request: web.BaseRequest) -> web.StreamResponse:
        try:
            return await handle(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return framework_refusal(exc)

    return handle_as_json


class GuardedHandler(RequestHandler):
    """aiohttp's connection, with a clock on each request's head, a bound on its bytes,
    the connection cap, and JSON framing errors."""

    def __init__(self, manager: GuardedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = manager
        self._head_clock: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._linger_left: int | None = None  # refused: bytes still read and dropped
        self._unread: StreamReader | None = None

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
        if self._head_clock is None and waiting_for_request(self):
            self._start_clock()
        counted = requests_parsed(self)
        super().data_received(data)
        if self._head_clock is None:
            return
        if requests_parsed(self) != counted:
            self._stop_clock()  # a whole head arrived
            return
        self._head_bytes += len(data)
        if self._head_bytes > self._guard.limits.max_head_bytes:
            self._refuse(self._guard.limits.headers_too_large())

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_clock()
        super().connection_lost(exc)
        if self._unread is not None and not self._unread.is_eof():
            self._unread.feed_eof()  # the read that drops it ends with the connection

    def note_unread(self, body: StreamReader) -> None:
        """A request was answered before its body was read whole: aiohttp reads and drops
        the rest (for up to LINGER_S), and that read must end if the connection goes first,
        which aiohttp leaves to a handler it may cancel."""
        self._unread = body

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
        if waiting_for_request(self):  # still waiting for the request's head
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

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        """A body that fails to decode while aiohttp drains it after the answer (one the
        handler never read, e.g. after a 417) is a malformed request: one line, not a
        traceback. Anything else keeps aiohttp's traceback."""
        exc = kwargs.get("exc_info")
        if isinstance(exc, web.RequestPayloadError):
            why = " ".join(str(getattr(exc.__cause__, "message", exc)).split())
            peer = self.transport.get_extra_info("peername") if self.transport else None
            self._guard.malformed(peer, f"malformed request body, connection closed: {why}")
            return
        super().log_exception(*args, **kwargs)

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
            error: HTTPFacingError = HTTPFacingError("internal error; see the server's log")
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
        limits = self._guard.limits
        if isinstance(exc, LineTooLong):  # which line, only its limit tells
            if f"more than {limits.max_request_line_bytes + LINE_EXTRA} bytes" in problem:
                return limits.target_too_long()
            return limits.headers_too_large()
        if problem.startswith("Too many headers"):
            return limits.headers_too_large()
        return BadRequest(f"malformed HTTP request: {problem}")
