"""HTTP helpers that every vespid server shares (worker, task server, null worker's
control port, control plane, handlers): JSON answers, JSON errors, one error middleware,
and which of a backend's headers are relayed to a client.

Each aiohttp app adds ``error_middleware``, so a handler raises an ``HTTPFacingError``
and never renders one itself; the worker's httptools front writes the same bytes from
``error_body``.

A server on an untrusted network also runs with ``GuardedAppRunner`` (an
``aiohttp.web.AppRunner`` with ``ConnectionLimits``): a request whose line and headers
do not arrive within ``header_timeout_s`` is answered 408 and its connection closed, so
is one whose body does not arrive within ``body_timeout_s`` (``body_deadline_middleware``),
connections beyond ``max_connections`` are closed as they open, and aiohttp's own refusals
(malformed HTTP: 400; unknown route: 404; body over ``client_max_size``: 413; an
``Expect`` other than ``100-continue``: 417, refused before any middleware runs) are JSON
(``framework_error_middleware``, and the guarded server for what precedes it), so is a
body that does not decode as its ``Content-Encoding`` says (400), each malformed request
logged in one line at most once a second (``RateLimitedLog``), not with a traceback.

One concern makes the module long: the HTTP that every vespid server shares, its JSON
answers and the guard its port runs behind.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server
from multidict import CIMultiDict

from vespid.errors import BadRequest, HTTPFacingError, RequestInvalid, RequestTimeout

__all__ = [
    "HOP_BY_HOP",
    "JSON_HEADERS",
    "JSON_TYPE",
    "MAX_BODY_DEPTH",
    "ConnectionLimits",
    "GuardedAppRunner",
    "RateLimitedLog",
    "bearer_token",
    "body_deadline_middleware",
    "error_body",
    "error_middleware",
    "error_response",
    "framework_error_middleware",
    "json_response",
    "nests_within",
    "read_body",
    "read_json",
    "read_json_within",
    "relay_aiohttp_headers",
    "relay_headers",
    "same_secret",
]

JSON_TYPE: Final = "application/json"
JSON_HEADERS: Final = {"Content-Type": JSON_TYPE}

# Headers that describe one connection, not the answer: never relayed.
HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"date",
        b"server",
    }
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON answer, serialised with orjson."""
    return web.Response(body=orjson.dumps(data), status=status, content_type=JSON_TYPE)


def error_body(exc: HTTPFacingError) -> bytes:
    """The JSON bytes of an error's answer: ``{"error", "code", ...}``."""
    return orjson.dumps(exc.body())


def error_response(exc: HTTPFacingError) -> web.Response:
    """An error's JSON answer, with its status."""
    return web.Response(body=error_body(exc), status=exc.status_code, content_type=JSON_TYPE)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every ``HTTPFacingError`` a handler raises as its JSON answer."""
    try:
        return await handler(request)
    except HTTPFacingError as exc:
        return error_response(exc)


async def read_body(request: web.Request) -> bytes:
    """The request body; ``BadRequest`` (400) when it cannot be read as its headers say
    (a ``Content-Encoding: gzip`` body that is not gzip, broken chunks)."""
    try:
        return await request.read()
    except web.RequestPayloadError as exc:
        # The rest is not read: marked at its end, so aiohttp does not try to drain it
        # after the answer (and log the same error again, with a traceback).
        request.content.feed_eof()
        cause = exc.__cause__ or exc
        why = " ".join(str(getattr(cause, "message", cause)).split())
        raise BadRequest(
            f"the request body is malformed ({why}); send the body that its Content-Length, "
            "Transfer-Encoding and Content-Encoding headers describe"
        ) from None


async def read_json(request: web.Request) -> Any:
    """The request body decoded as JSON; ``RequestInvalid`` when it is not."""
    try:
        return orjson.loads(await read_body(request))
    except orjson.JSONDecodeError as exc:
        raise RequestInvalid(f"request body is not valid JSON ({exc})") from None


# How deep a JSON body read with ``read_json_within`` may nest: far beyond any body vespid
# reads, far below what costs a parser or a validator anything.
MAX_BODY_DEPTH: Final = 32


def nests_within(value: Any, max_depth: int) -> bool:
    """Whether ``value``'s arrays and objects nest at most ``max_depth`` deep
    (``{"a": [1]}`` nests 2 deep); iterative, so any depth is measured safely."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            return False
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return not isinstance(value, dict | list) or max_depth >= 1


async def read_json_within(request: web.Request, max_depth: int = MAX_BODY_DEPTH) -> Any:
    """``read_json``, refusing (422) a body that nests deeper than ``max_depth``."""
    value = await read_json(request)
    if isinstance(value, dict | list) and not nests_within(value, max_depth):
        raise RequestInvalid(
            f"request body nests deeper than {max_depth} arrays or objects; send a flatter body"
        )
    return value


def bearer_token(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if one was sent."""
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


def same_secret(given: str | None, secret: str) -> bool:
    """Constant-time comparison of a presented secret with the expected one. A header
    that was not UTF-8 (aiohttp keeps such bytes as surrogates) is just a wrong secret."""
    return given is not None and hmac.compare_digest(
        given.encode("utf-8", "surrogateescape"), secret.encode()
    )


def relay_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """The backend's headers as the client gets them: hop-by-hop ones dropped."""
    return [
        (name.decode("latin-1"), value.decode("utf-8", "surrogateescape"))
        for name, value in headers
        if name.lower() not in HOP_BY_HOP
    ]


def relay_aiohttp_headers(headers: Mapping[str, str]) -> CIMultiDict[str]:
    """An aiohttp response's headers as the client gets them: hop-by-hop ones dropped."""
    return CIMultiDict(
        (k, v) for k, v in headers.items() if k.lower().encode("latin-1") not in HOP_BY_HOP
    )


# -- a server that outlasts slow, malformed and numerous connections ------------------


class RateLimitedLog:
    """One warning line per event, at most one a second; the ones skipped are counted
    into the next line, so a flood of bad requests costs a line a second."""

    def __init__(self, logger: logging.Logger, every_s: float = 1.0) -> None:
        self.logger = logger
        self.every_s = every_s
        self._last = float("-inf")
        self._skipped = 0

    def warning(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last < self.every_s:
            self._skipped += 1
            return
        skipped, self._skipped, self._last = self._skipped, 0, now
        if skipped:
            message += f" (and {skipped} more like it not logged)"
        self.logger.warning(message, *args)


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a request may take to arrive, and how many connections are held; and the
    log of one server's refused connections and malformed requests."""

    header_timeout_s: float
    body_timeout_s: float
    max_connections: int
    header_setting: str = "header_timeout_s"  # the names a refusal tells the caller
    body_setting: str = "body_timeout_s"
    log: RateLimitedLog = field(
        default_factory=lambda: RateLimitedLog(logging.getLogger("vespid.http"))
    )


def _raw_error(exc: HTTPFacingError) -> bytes:
    """A whole HTTP/1.1 answer that closes the connection, for when no handler runs."""
    body = error_body(exc)
    head = (
        f"HTTP/1.1 {exc.status_code} Error\r\nContent-Type: {JSON_TYPE}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class _GuardedHandler(RequestHandler):
    """aiohttp's connection handler, with a deadline on each request's headers, a bound
    on the connections its server holds, and JSON answers to malformed requests."""

    def __init__(self, manager: _GuardedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = manager.limits
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        server = self._manager
        if isinstance(server, _GuardedServer) and server.held() > self._guard.max_connections:
            self._guard.log.warning(
                "closed a connection: %d held, the most is %d",
                server.held(), self._guard.max_connections,
            )  # fmt: skip
            self.force_close()
            transport.close()
            return
        self._arm_header_deadline()

    def _arm_header_deadline(self) -> None:
        self._header_deadline = self._loop.call_later(
            self._guard.header_timeout_s, self._headers_late, self._request_count
        )

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def data_received(self, data: bytes) -> None:
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:
            self._disarm_header_deadline()  # a request's line and headers are in
        elif self._header_deadline is None and self._current_request is None and not self._messages:
            self._arm_header_deadline()  # the first bytes of the next request

    def _headers_late(self, parsed: int) -> None:
        self._header_deadline = None
        if self._request_count != parsed or self._current_request is not None or self._messages:
            return
        limit = self._guard.header_timeout_s
        self._guard.log.warning("closed a connection whose headers took over %g s", limit)
        if self.transport is not None:
            self.transport.write(
                _raw_error(
                    RequestTimeout(
                        f"the request line and headers took over {limit:g} s to arrive "
                        f"({self._guard.header_setting})"
                    )
                )
            )
        self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        """A body that fails to decode while aiohttp drains it after the answer (one the
        handler never read, e.g. after a 417) is a malformed request: one line, not a
        traceback. Anything else keeps aiohttp's traceback."""
        exc = kwargs.get("exc_info")
        if isinstance(exc, web.RequestPayloadError):
            why = " ".join(str(getattr(exc.__cause__, "message", exc)).split())
            self._guard.log.warning("malformed request body, connection closed: %s", why[:200])
            return
        super().log_exception(*args, **kwargs)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A malformed request (aiohttp's own 4xx): one log line and a JSON answer; a 5xx
        is a bug and keeps aiohttp's traceback."""
        if status >= 500:
            return super().handle_error(request, status, exc, message)
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was sent already; the connection is broken")
        what = message or (str(exc) if exc else "malformed request")
        self._guard.log.warning("malformed request from %s: %s", request.remote, what[:200])
        response = web.Response(
            status=status,
            body=orjson.dumps({"error": f"malformed HTTP request: {what}", "code": "bad_request"}),
            content_type=JSON_TYPE,
        )
        response.force_close()
        return response


class _GuardedServer(Server):
    """aiohttp's server, making ``_GuardedHandler``s."""

    def __init__(self, plain: Server, limits: ConnectionLimits) -> None:
        super().__init__(
            _refusals_as_json(plain.request_handler),
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=asyncio.get_running_loop(),
            **plain._kwargs,
        )
        self.limits = limits

    def held(self) -> int:
        """Connections open now."""
        return len(self._connections)

    def __call__(self) -> RequestHandler:
        return _GuardedHandler(self, loop=self._loop, **self._kwargs)


class GuardedAppRunner(web.AppRunner):
    """An ``AppRunner`` whose connections obey ``limits`` (see the module docstring); the
    app should also have ``body_deadline_middleware`` and ``framework_error_middleware``."""

    def __init__(self, app: web.Application, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.limits = limits

    async def _make_server(self) -> Server:
        return _GuardedServer(await super()._make_server(), self.limits)


def body_deadline_middleware(limits: ConnectionLimits) -> Any:
    """A middleware that reads each body within ``limits.body_timeout_s`` before the
    handler runs (the handler's own read then returns it at once); a body that takes
    longer is answered 408, and one that cannot be read as its headers say 400, and its
    connection closed."""

    @web.middleware
    async def read_in_time(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.body_exists:
            try:
                async with asyncio.timeout(limits.body_timeout_s):
                    await read_body(request)
            except BadRequest as exc:
                limits.log.warning("malformed request body from %s: %s", request.remote, exc)
                response = error_response(exc)
                response.force_close()  # what follows on the connection cannot be trusted
                return response
            except TimeoutError:
                limit = limits.body_timeout_s
                limits.log.warning("closed a connection whose body took over %g s", limit)
                response = error_response(
                    RequestTimeout(
                        f"the request body took over {limit:g} s to arrive ({limits.body_setting})"
                    )
                )
                response.force_close()
                return response
        return await handler(request)

    return read_in_time


@web.middleware
async def framework_error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own refusals (unknown route, wrong method, body over the size limit) as
    JSON ``{"error", "code"}`` with their status."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _framework_refusal(exc)


def _framework_refusal(exc: web.HTTPException) -> web.Response:
    """One of aiohttp's own refusals as JSON ``{"error", "code"}`` with its status."""
    code = exc.reason.lower().replace(" ", "_")
    response = web.Response(
        status=exc.status,
        body=orjson.dumps({"error": exc.text or exc.reason, "code": code}),
        content_type=JSON_TYPE,
        headers={k: v for k, v in exc.headers.items() if k.lower() == "allow"},
    )
    if exc.status == 413:
        response.force_close()  # the rest of the body is not read
    return response


def _refusals_as_json(
    handle: Callable[[BaseRequest], Awaitable[web.StreamResponse]],
) -> Callable[[BaseRequest], Awaitable[web.StreamResponse]]:
    """An app's request handler whose refusals made before any middleware runs (aiohttp's
    ``Expect`` check: 417) are JSON too."""

    async def handle_as_json(request: BaseRequest) -> web.StreamResponse:
        try:
            return await handle(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _framework_refusal(exc)

    return handle_as_json
