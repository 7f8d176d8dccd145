"""HTTP helpers that every vespid server shares (worker, task server, null worker's
control port, control plane, handlers): JSON answers, JSON errors, one error middleware,
and which of a backend's headers are relayed to a client.

Each aiohttp app adds ``error_middleware``, so a handler raises an ``HTTPFacingError``
and never renders one itself; the worker's httptools front writes the same bytes from
``error_body``. How a port guards its connections (limits, deadlines, aiohttp's own
refusals as JSON) is ``vespid.guard``.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import orjson
from aiohttp import web
from multidict import CIMultiDict

from vespid.errors import BadRequest, HTTPFacingError, RequestInvalid

__all__ = [
    "HOP_BY_HOP",
    "JSON_HEADERS",
    "JSON_TYPE",
    "MAX_BODY_DEPTH",
    "bearer_token",
    "error_body",
    "error_middleware",
    "error_response",
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
    """An error's JSON answer, with its status; it closes the connection where the error
    says so (``closes_connection``)."""
    response = web.Response(body=error_body(exc), status=exc.status_code, content_type=JSON_TYPE)
    if exc.closes_connection:
        response.force_close()
    return response


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
