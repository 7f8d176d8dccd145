"""The handler API: a typed route on the worker that may parse, weigh, rewrite and reshape.

The generic worker forwards every payload unchanged. A ``Handler`` serves one route
(``path`` and ``method``) for an API that needs more:

1. ``parse(payload)`` turns the request's JSON payload into a typed value, raising
   ``PayloadInvalid`` (or ``ValueError``, ``TypeError``, ``KeyError``) for a bad one:
   the client gets 422 with the message and any ``fields``, never a 500.
2. ``workload(value, cost)`` is the request's workload for admission, reports and
   metrics; by default the router's ``auth_data.cost``.
3. ``backend_call(value, path_qs)`` says what to send the backend: method, path and
   query, body, headers; by default the same path with the value as JSON.
4. ``respond(request, backend_response, value)`` shapes the client's answer; by default
   the backend's status, headers and body are relayed, streamed bodies chunk by chunk.
   A handler that streams prepares its own ``web.StreamResponse`` and writes to it.

A handled request still goes through everything a passthrough request does: the
envelope (or the ``X-Vespid-Auth`` header), the signature check, readiness, sessions,
admission and queueing, the books, reports and metrics.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import aiohttp
from aiohttp import web

from vespid.protocol.wire import dumps
from vespid.web import JSON_HEADERS, relay_aiohttp_headers

__all__ = ["JSON_HEADERS", "BackendCall", "Handler", "relay"]

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class BackendCall:
    """What to send the backend for one request: ``method`` to ``BACKEND_URL + path_qs``."""

    path_qs: str
    body: bytes
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON_HEADERS))


async def relay(request: web.Request, backend: aiohttp.ClientResponse) -> web.StreamResponse:
    """The default answer: the backend's status, content type and body, streamed as it comes."""
    out = web.StreamResponse(status=backend.status, headers=relay_aiohttp_headers(backend.headers))
    await out.prepare(request)
    async for chunk in backend.content.iter_any():
        await out.write(chunk)
    await out.write_eof()
    return out


class Handler(ABC, Generic[P]):
    """One worker route with a typed payload. Subclass, set ``path``, implement ``parse``."""

    path: str = ""  # the worker route, e.g. "/generate"; a class or an instance sets it
    method: str = "POST"

    @property
    def custom_response(self) -> bool:
        """Whether ``respond`` is overridden (else the worker relays the answer itself)."""
        return type(self).respond is not Handler.respond

    @abstractmethod
    def parse(self, payload: Any) -> P:
        """Check the payload (decoded JSON); raise PayloadInvalid to refuse it with 422."""

    def workload(self, value: P, cost: float) -> float:
        """The request's workload; by default ``auth_data.cost`` as the router computed it."""
        return cost

    def backend_call(self, value: P, path_qs: str) -> BackendCall:
        """What to send the backend; by default the value as JSON to the same path."""
        return BackendCall(path_qs, dumps(value))

    async def respond(
        self, request: web.Request, backend: aiohttp.ClientResponse, value: P
    ) -> web.StreamResponse:
        """The client's answer; by default the backend's, relayed."""
        return await relay(request, backend)
