"""The workers' side of the control plane: ``POST /worker_status/`` and
``POST /delete_requests/``, each authenticated by the master token in its body and
validated with the report's model from ``protocol/wire.py`` (422 naming the field).
Finished requests are counted, and their waits in the worker's queue go to the history."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from vespid.control.fleet import Fleet
from vespid.control.history import History
from vespid.control.metrics import ControlMetrics
from vespid.errors import NotFound, RequestInvalid, Unauthorized
from vespid.protocol.wire import (
    DELETE_REQUESTS_PATH,
    WORKER_STATUS_PATH,
    DeleteRequestsReport,
    WorkerStatusReport,
)
from vespid.web import json_response, read_json, same_secret

__all__ = ["ReportApi"]

Report = TypeVar("Report", bound=BaseModel)


class ReportApi:
    """Reports in: the fleet learns each worker's state; finished requests are counted,
    and the history learns how long they waited in the worker's queue."""

    def __init__(
        self,
        fleet: Fleet,
        metrics: ControlMetrics,
        history: History,
        master_token: str,
        on_report: Callable[[str], Awaitable[None]],
    ) -> None:
        self.fleet = fleet
        self.metrics = metrics
        self.history = history
        self.master_token = master_token
        self.on_report = on_report  # called with the endpoint of each accepted status report

    def add_routes(self, routes: web.UrlDispatcher) -> None:
        routes.add_post(WORKER_STATUS_PATH, self.handle_worker_status)
        routes.add_post(DELETE_REQUESTS_PATH, self.handle_delete_requests)

    def _parse(self, body: Any, model: type[Report], what: str) -> Report:
        """The token first (401 before any other complaint), then the body's fields."""
        if not isinstance(body, dict):
            raise RequestInvalid("report must be a JSON object")
        token = body.get("mtoken")
        if not same_secret(token if isinstance(token, str) else None, self.master_token):
            raise Unauthorized("wrong or missing mtoken")
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise RequestInvalid.from_validation(exc, what) from None

    async def handle_worker_status(self, request: web.Request) -> web.Response:
        report = self._parse(await read_json(request), WorkerStatusReport, "worker status")
        record = self.fleet.ingest(report)
        if record is None:
            raise NotFound(f"worker {report.id} is not one of this control plane's")
        await self.on_report(record.handle.endpoint)  # a report may free capacity
        return json_response({"ok": True})

    async def handle_delete_requests(self, request: web.Request) -> web.Response:
        report = self._parse(await read_json(request), DeleteRequestsReport, "finished requests")
        for item in report.requests:
            self.metrics.count_finished(item["success"])
        record = self.fleet.workers.get(report.worker_id)
        if record is not None:  # a worker already gone has no endpoint to charge
            self.history.note_finished(record.handle.endpoint, report.requests)
        return json_response({"ok": True})
