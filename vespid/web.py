"""HTTP helpers that every vespid server shares (worker, task server, null worker's
control port, control plane, handlers): JSON answers, JSON errors, one error middleware,
and which of a backend's headers are relayed to a client.

Each aiohttp app adds ``error_middleware``, so a handler raises an ``HTTPFacingError``
and never renders one itself; the worker's httptools front writes the same bytes from
``error_body``.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import orjson
from aiohttp import web
from multidict import CIMultiDict

from vespid.errors import HTTPFacingError, RequestInvalid

__all__ = [
    "HOP_BY_HOP",
    "JSON_HEADERS",
    "JSON_TYPE",
    "bearer_token",
    "error_body",
    "error_middleware",
    "error_response",
    "json_response",
    "read_json",
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


async def read_json(request: web.Request) -> Any:
    """The request body decoded as JSON; ``RequestInvalid`` when it is not."""
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise RequestInvalid(f"request body is not valid JSON ({exc})") from None


def bearer_token(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if one was sent."""
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


def same_secret(given: str | None, secret: str) -> bool:
    """Constant-time comparison of a presented secret with the expected one."""
    return given is not None and hmac.compare_digest(given.encode(), secret.encode())


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
