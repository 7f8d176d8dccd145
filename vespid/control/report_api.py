"""The workers' side of the control plane: ``POST /worker_status/`` and
``POST /delete_requests/``. Finished requests are counted, and their waits in the worker's
queue go to the history.

Each report names its worker (``id``, or ``worker_id`` for finished requests) and carries
that worker's own report token as ``mtoken`` (Vast's field name; the token derives from
the report secret and the id, ``ControlKeys.worker_token``), so a worker speaks for itself
only. The token is checked first (401 before any other complaint, once the id is an
integer), then the body is validated with the report's model from ``protocol/wire.py``
(finite, bounded numbers; 422 naming the field).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from vespid.control.fleet import Fleet
from vespid.control.history import History
from vespid.control.keys import ControlKeys
from vespid.control.metrics import ControlMetrics
from vespid.errors import NotFound, RequestInvalid, Unauthorized
from vespid.protocol.wire import (
    DELETE_REQUESTS_PATH,
    WORKER_STATUS_PATH,
    DeleteRequestsReport,
    WorkerStatusReport,
)
from vespid.web import json_response, read_json_within, same_secret

__all__ = ["ReportApi"]

Report = TypeVar("Report", bound=BaseModel)

_MAX_WORKER_ID = 2**63 - 1


class ReportApi:
    """Reports in: the fleet learns each worker's state; finished requests are counted,
    and the history learns how long they waited in the worker's queue."""

    def __init__(
        self,
        fleet: Fleet,
        metrics: ControlMetrics,
        history: History,
        keys: ControlKeys,
        on_report: Callable[[str], Awaitable[None]],
    ) -> None:
        self.fleet = fleet
        self.metrics = metrics
        self.history = history
        self.keys = keys
        self.on_report = on_report  # called with the endpoint of each accepted status report

    def add_routes(self, routes: web.UrlDispatcher) -> None:
        routes.add_post(WORKER_STATUS_PATH, self.handle_worker_status)
        routes.add_post(DELETE_REQUESTS_PATH, self.handle_delete_requests)

    def _parse(self, body: Any, model: type[Report], id_field: str, what: str) -> Report:
        """The worker's id, then its token, then the body's fields."""
        if not isinstance(body, dict):
            raise RequestInvalid(f"{what} report must be a JSON object")
        worker_id = body.get(id_field)
        if (
            not isinstance(worker_id, int)
            or isinstance(worker_id, bool)
            or not 0 <= worker_id <= _MAX_WORKER_ID
        ):
            raise RequestInvalid.listing(
                f"{what} report", {id_field: "expected the worker's id (CONTAINER_ID)"}
            )
        token = body.get("mtoken")
        expected = self.keys.worker_token(worker_id)
        if not same_secret(token if isinstance(token, str) else None, expected):
            raise Unauthorized(
                f"wrong or missing mtoken for worker {worker_id}: send that worker's own "
                "MASTER_TOKEN"
            )
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise RequestInvalid.from_validation(exc, f"{what} report") from None

    async def handle_worker_status(self, request: web.Request) -> web.Response:
        body = await read_json_within(request)
        report = self._parse(body, WorkerStatusReport, "id", "worker status")
        record = self.fleet.ingest(report)
        if record is None:
            raise NotFound(f"worker {report.id} is not one of this control plane's")
        await self.on_report(record.handle.endpoint)  # a report may free capacity
        return json_response({"ok": True})

    async def handle_delete_requests(self, request: web.Request) -> web.Response:
        body = await read_json_within(request)
        report = self._parse(body, DeleteRequestsReport, "worker_id", "finished requests")
        for item in report.requests:
            self.metrics.count_finished(item["success"])
        record = self.fleet.workers.get(report.worker_id)
        if record is not None:  # a worker already gone has no endpoint to charge
            self.history.note_finished(record.handle.endpoint, report.requests)
        return json_response({"ok": True})
