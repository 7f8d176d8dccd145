"""What the control plane shows of itself, without a key: ``GET /api/v0/status``
(endpoints with their revision, rollout and parked seconds; workers with their revision and
phase; queues, where requests waited lately, the latest scaling actions),
``GET /api/v0/history`` (a sample a second per endpoint), ``GET /metrics`` (Prometheus)
and the status page."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from vespid.control.fleet import Fleet
from vespid.control.history import History
from vespid.control.metrics import ControlMetrics
from vespid.control.models import EndpointConfig
from vespid.control.page import StatusPage
from vespid.control.router import Router
from vespid.errors import RequestInvalid
from vespid.web import json_response

__all__ = ["StatusApi"]

SCALING_LOG_SHOWN = 50  # the latest scaling actions in a status answer


class StatusApi:
    """Read-only views of the endpoints, the fleet, the router and the scaling log."""

    def __init__(
        self,
        endpoints: Mapping[str, EndpointConfig],
        fleet: Fleet,
        router: Router,
        history: History,
        metrics: ControlMetrics,
        scaling_log: Sequence[dict[str, Any]],
        rollout: Callable[[EndpointConfig], dict[str, Any]],
    ) -> None:
        self.endpoints = endpoints
        self.fleet = fleet
        self.router = router
        self.history = history
        self.metrics = metrics
        self.scaling_log = scaling_log  # the autoscaler's list, read as it grows
        self.rollout = rollout  # an endpoint's rollout status (the autoscaler's)

    def add_routes(self, routes: web.UrlDispatcher) -> None:
        routes.add_get("/api/v0/status", self.handle_status)
        routes.add_get("/api/v0/history", self.handle_history)
        StatusPage().add_routes(routes)
        routes.add_get("/metrics", self.handle_metrics)

    def status(self) -> dict[str, Any]:
        """Endpoints with their revision, rollout, workers, parked seconds, queues and
        recent waits (in the router's queue, the workers' queues, the workers), route
        decisions, the latest actions."""
        endpoints = []
        for endpoint in self.endpoints.values():
            queued_load, queued = self.router.queued_load(endpoint.name)
            endpoints.append(
                {
                    "name": endpoint.name,
                    "revision": endpoint.revision,
                    "rollout": self.rollout(endpoint),
                    "parked_s": round(self.fleet.parked_seconds(endpoint.name), 3),
                    "scaling": endpoint.scaling.model_dump(),
                    "queued": queued,
                    "queued_load": queued_load,
                    "waits": self.history.recent_waits(endpoint.name),
                    "workers": [w.describe() for w in self.fleet.of(endpoint.name)],
                }
            )
        return {
            "time": time.time(),
            "endpoints": endpoints,
            "route_decisions": dict(self.router.decisions),
            "scaling_log": list(self.scaling_log[-SCALING_LOG_SHOWN:]),
        }

    async def handle_status(self, request: web.Request) -> web.Response:
        return json_response(self.status())

    async def handle_history(self, request: web.Request) -> web.Response:
        since: float | None = None
        if "since" in request.query:
            try:
                since = float(request.query["since"])
            except ValueError:
                raise RequestInvalid(
                    "since must be a unix time, e.g. since=1700000000.5",
                    fields={"since": "expected a number"},
                ) from None
        names = request.query.getall("endpoint", None)
        return json_response(self.history.to_json(since, names))

    async def handle_metrics(self, request: web.Request) -> web.Response:
        self.metrics.refresh(self.endpoints, self.fleet, self.router)
        return web.Response(body=self.metrics.render(), content_type="text/plain")
