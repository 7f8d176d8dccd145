"""Reading a request aiohttp took into what the backend gets: its auth_data, the bytes
and headers to send, the session it rides, and (for a handler's route) the call the
handler makes of its payload.

``POST`` bodies are the ``{"auth_data", "payload", "session_id"?}`` envelope and the
backend gets ``payload``; requests that carry auth_data as JSON in the
``X-Vespid-Auth`` header instead (any method) send the body as it came, and name
their session in ``X-Vespid-Session``. With ``VESPID_RAW_REQUESTS`` (development,
unsecured only) a POST body that is not an envelope is taken whole as the payload,
with no auth_data at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, NamedTuple

import aiohttp
import orjson
from aiohttp import web

from vespid.errors import PayloadInvalid, RequestInvalid
from vespid.guard import ConnectionLimits, read_body
from vespid.handlers.base import Handler
from vespid.protocol.wire import (
    AUTH_HEADER,
    SESSION_HEADER,
    UNSECURED_AUTH_DEFAULTS,
    AuthData,
    dumps,
    parse_auth_data,
    parse_worker_request,
)
from vespid.web import JSON_HEADERS
from vespid.worker.proxy import Respond

__all__ = ["Call", "Parsed", "backend_call", "parse_request"]

PASSED_REQUEST_HEADERS: Final = ("Content-Type", "Accept")
UNDECODED: Final = object()  # Parsed.payload when the body was not decoded as JSON
PARSE_ERRORS: Final = (ValueError, TypeError, KeyError, IndexError)


class Parsed(NamedTuple):
    """A checked request: what to send the backend, and the session it rides."""

    auth: AuthData
    body: bytes
    headers: dict[str, str]
    session_id: str | None
    payload: object = UNDECODED  # the envelope's payload or a raw body, decoded


class Call(NamedTuple):
    """One request's backend call and its workload, as a handler (or passthrough) has it."""

    workload: float
    method: str
    path_qs: str
    body: bytes
    headers: dict[str, str]
    respond: Respond | None  # None: relay the backend's answer


def _anonymous(path: str) -> AuthData:
    """auth_data for a raw request on an unsecured worker: no signature, cost 0."""
    return parse_auth_data({**UNSECURED_AUTH_DEFAULTS, "endpoint": path})


def _decode(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return UNDECODED


def _passed_headers(request: web.Request) -> dict[str, str]:
    return {h: request.headers[h] for h in PASSED_REQUEST_HEADERS if h in request.headers}


async def parse_request(
    request: web.Request,
    *,
    max_body_bytes: int,
    limits: ConnectionLimits,
    raw: bool,
    parse_auth: Callable[[Any], AuthData] = parse_auth_data,
) -> Parsed:
    """Read and check one request: auth_data (read with ``parse_auth``), the bytes for
    the backend, headers, and the session it rides, if any (``raw``: VESPID_RAW_REQUESTS)."""
    body = await read_body(request, limits, max_body_bytes, "VESPID_MAX_BODY_BYTES")
    if request.method == "POST" and AUTH_HEADER not in request.headers:
        if raw:
            value = _decode(body)
            if not (isinstance(value, dict) and "auth_data" in value and "payload" in value):
                return Parsed(_anonymous(request.path), body, _passed_headers(request), None, value)
        parsed = parse_worker_request(body, parse_auth)
        return Parsed(
            parsed.auth, dumps(parsed.payload), JSON_HEADERS, parsed.session_id, parsed.payload
        )
    header = request.headers.get(AUTH_HEADER)
    if header is None:
        raise RequestInvalid(
            f"{request.method} requests carry auth_data as JSON in the {AUTH_HEADER} header",
            fields={AUTH_HEADER: "missing"},
        )
    try:
        auth_value = orjson.loads(header)
    except orjson.JSONDecodeError:
        raise RequestInvalid(
            f"{AUTH_HEADER} header is not valid JSON", fields={AUTH_HEADER: "invalid JSON"}
        ) from None
    session_id = request.headers.get(SESSION_HEADER)
    return Parsed(parse_auth(auth_value), body, _passed_headers(request), session_id)


def backend_call(request: web.Request, parsed: Parsed, handler: Handler[Any] | None) -> Call:
    """The backend call for a checked request: passthrough, or what its handler makes."""
    if handler is None:
        return Call(
            parsed.auth.cost, request.method, request.path_qs, parsed.body, parsed.headers, None
        )
    payload = parsed.payload
    if payload is UNDECODED:
        payload = _decode(parsed.body)
        if payload is UNDECODED:
            raise PayloadInvalid(f"{request.path} takes a JSON payload; the body is not JSON")
    try:
        value = handler.parse(payload)
    except PayloadInvalid:
        raise
    except PARSE_ERRORS as exc:
        raise PayloadInvalid(f"invalid payload for {request.path}: {exc}") from None
    workload = handler.workload(value, parsed.auth.cost)
    call = handler.backend_call(value, request.path_qs)
    respond: Respond | None = None
    if handler.custom_response:

        async def respond(req: web.Request, resp: aiohttp.ClientResponse) -> web.StreamResponse:
            return await handler.respond(req, resp, value)

    return Call(workload, call.method, call.path_qs, call.body, call.headers, respond)
