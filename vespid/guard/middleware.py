"""The guard's part inside an app: a request's declared size checked from its head, its
body read within ``body_timeout_s``, and aiohttp's own refusals as JSON.

- ``declared_size_middleware``: headers over their limit in all (431: aiohttp bounds
  each one, not their sum) or a ``Content-Length`` over the app's body limit (413),
  refused before any of the body is read;
- ``read_body``: the whole body, 413 over the limit and 408 when it is late; a handler
  that reads its own body calls it, and ``body_deadline_middleware`` calls it for the
  handlers that do not;
- ``framework_error_middleware``: aiohttp's unknown route (404), wrong method (405) and
  body over ``client_max_size`` (413) as JSON ``{"error", "code"}``;
- ``unread_body_middleware``: a body left unread (refused, or ignored by its handler)
  is noted on the ``GuardedHandler``, so that dropping the rest ends with the connection.

``guard_middlewares`` is the list an app starts with, ``error_middleware`` among them.
The errors raised here close the connection once answered (``closes_connection``).
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from vespid.guard.limits import ConnectionLimits
from vespid.guard.server import GuardedHandler, framework_refusal
from vespid.web import error_middleware
from vespid.web import read_body as read_request_body

__all__ = [
    "body_deadline_middleware",
    "declared_size_middleware",
    "framework_error_middleware",
    "guard_middlewares",
    "read_body",
    "unread_body_middleware",
]


def declared_size_middleware(limits: ConnectionLimits, max_bytes: int, setting: str) -> Middleware:
    """Refuse, before any of the body is read, a request whose headers are over their
    limit in all (431) or whose ``Content-Length`` exceeds ``max_bytes`` (413, naming
    ``setting``)."""

    @web.middleware
    async def declared_size(request: web.Request, handler: Handler) -> web.StreamResponse:
        head = sum(len(name) + len(value) for name, value in request.raw_headers)
        if head > limits.max_header_bytes:
            raise limits.headers_too_large()
        length = request.content_length
        if length is not None and length > max_bytes:
            raise limits.body_too_large(max_bytes, setting)
        return await handler(request)

    return declared_size


async def read_body(
    request: web.Request, limits: ConnectionLimits, max_bytes: int, setting: str
) -> bytes:
    """The whole body: BodyTooLarge (413) beyond ``max_bytes`` (the app's
    ``client_max_size``, named by ``setting``), RequestTimeout (408) when it takes longer
    than ``limits.body_timeout_s`` to arrive, BadRequest (400) when it is not what its
    headers say (``vespid.web.read_body``). Read once, it is kept: a second call (or
    ``request.read()``) returns it at once."""
    try:
        async with asyncio.timeout(limits.body_timeout_s):
            return await read_request_body(request)
    except web.HTTPRequestEntityTooLarge:
        raise limits.body_too_large(max_bytes, setting) from None
    except TimeoutError:
        raise limits.body_too_slow() from None


def body_deadline_middleware(limits: ConnectionLimits, max_bytes: int, setting: str) -> Middleware:
    """Read each body with ``read_body`` before the handler runs (the handler's own read
    then returns it at once)."""

    @web.middleware
    async def read_in_time(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.body_exists:
            await read_body(request, limits, max_bytes, setting)
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
        return framework_refusal(exc)


@web.middleware
async def unread_body_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tell the connection of a request answered before its body was read whole."""
    try:
        return await handler(request)
    finally:
        if not request.content.is_eof() and isinstance(request.protocol, GuardedHandler):
            request.protocol.note_unread(request.content)


def guard_middlewares(
    limits: ConnectionLimits, max_bytes: int, setting: str, *, read_bodies: bool
) -> list[Middleware]:
    """An app's middlewares: aiohttp's refusals and every ``HTTPFacingError`` as JSON,
    the declared size checked; with ``read_bodies``, each body read in time before its
    handler runs (for apps whose handlers do not call ``read_body`` themselves)."""
    middlewares = [
        unread_body_middleware,
        framework_error_middleware,
        error_middleware,
        declared_size_middleware(limits, max_bytes, setting),
    ]
    if read_bodies:
        middlewares.append(body_deadline_middleware(limits, max_bytes, setting))
    return middlewares
