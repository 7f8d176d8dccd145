"""The client's side of the control plane: ``POST /route/`` (route or queue a request,
holding a queued call until a worker can take it), ``GET /pubkey/`` and ``GET /ca.pem``.

A queued call is held up to ``route_hold_s`` (5 s, under the 10 s Vast's client allows
the call) and answered as soon as a worker can take the request, so a cold start is not
lengthened by the client's poll backoff. A worker report that may free capacity wakes
the held calls of its endpoint (``notify_capacity``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from vespid.control.autoscaler import Autoscaler
from vespid.control.keys import ControlKeys, presented_key
from vespid.control.metrics import ControlMetrics
from vespid.control.models import EndpointConfig, find_endpoint
from vespid.control.router import Router
from vespid.errors import HTTPFacingError, RequestInvalid, Unauthorized
from vespid.protocol.wire import PUBKEY_PATH, ROUTE_PATH, RouteRequest
from vespid.web import json_response, read_json_within, same_secret

__all__ = ["RouteApi"]

PEM_TYPE = "application/x-pem-file"


class RouteApi:
    """``/route/`` and the keys a client or worker downloads."""

    def __init__(
        self,
        endpoints: Mapping[str, EndpointConfig],
        router: Router,
        keys: ControlKeys,
        metrics: ControlMetrics,
        autoscaler: Autoscaler,
        *,
        hold_s: float,
        max_cost: float,
    ) -> None:
        self.endpoints = endpoints
        self.router = router
        self.keys = keys
        self.metrics = metrics
        self.autoscaler = autoscaler
        self.hold_s = hold_s
        self.max_cost = max_cost  # VESPID_MAX_ROUTE_COST
        self._capacity: dict[str, asyncio.Condition] = {}  # held /route/ calls wait here

    def add_routes(self, routes: web.UrlDispatcher) -> None:
        routes.add_post(ROUTE_PATH, self.handle_route)
        routes.add_get(PUBKEY_PATH, self.handle_pubkey)
        routes.add_get("/ca.pem", self.handle_ca)

    async def handle_route(self, request: web.Request) -> web.Response:
        body = await read_json_within(request)
        if not isinstance(body, dict):
            raise RequestInvalid('send {"endpoint": name, "api_key": key, "cost": n}')
        try:
            route = RouteRequest.model_validate(body)
        except ValidationError as exc:
            raise RequestInvalid.from_validation(exc, "route request") from None
        if route.cost > self.max_cost:
            raise RequestInvalid.listing(
                "route request",
                {"cost": f"at most {self.max_cost:g} (VESPID_MAX_ROUTE_COST); got {route.cost:g}"},
            )
        endpoint = find_endpoint(self.endpoints, route.endpoint)
        if not same_secret(route.api_key or presented_key(request), endpoint.api_key):
            raise Unauthorized(f"wrong API key for endpoint {endpoint.name!r}")
        try:
            answer = self.router.route(endpoint, route.cost, route.request_idx or 0)
        except HTTPFacingError:
            self.metrics.count_route("rejected")
            raise
        if "url" not in answer:
            self.autoscaler.wake()  # a queued request may need a worker started now
            answer = await self._hold_queued(endpoint, route.cost, answer)
        self.metrics.count_route("routed" if "url" in answer else "queued")
        return json_response(answer)

    async def _hold_queued(
        self, endpoint: EndpointConfig, cost: float, answer: dict[str, Any]
    ) -> dict[str, Any]:
        """Route again each time capacity may have freed, until routed or ``hold_s``."""
        condition = self._capacity.setdefault(endpoint.name, asyncio.Condition())
        try:
            async with asyncio.timeout(self.hold_s), condition:
                while "url" not in answer:
                    await condition.wait()
                    if endpoint.name not in self.endpoints:
                        break
                    answer = self.router.route(endpoint, cost, answer["request_idx"])
        except TimeoutError:
            pass
        return answer

    async def notify_capacity(self, endpoint: str) -> None:
        """A worker of ``endpoint`` reported: wake its held calls to route again."""
        condition = self._capacity.get(endpoint)
        if condition is not None:
            async with condition:
                condition.notify_all()

    async def handle_pubkey(self, request: web.Request) -> web.Response:
        return web.Response(body=self.keys.public_key_pem, content_type=PEM_TYPE)

    async def handle_ca(self, request: web.Request) -> web.Response:
        return web.Response(body=self.keys.ca_pem, content_type=PEM_TYPE)
