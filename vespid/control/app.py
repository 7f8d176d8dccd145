"""``vespid control``: the parts of the control plane, composed into one aiohttp app.

``ControlPlane`` loads the keys, endpoints and rollouts, builds the router, the history
and the autoscaler, takes back the workers an earlier run left running, and mounts the
HTTP APIs, each a module of its own:

- ``route_api``: ``POST /route/`` (endpoint API key; PROTOCOL.md section 5),
  ``GET /pubkey/``, ``GET /ca.pem``.
- ``report_api``: ``POST /worker_status/``, ``POST /delete_requests/`` (each worker's
  own report token).
- ``endpoint_api``: ``GET /api/v0/endptjobs/[<id>/]`` (endpoint API key or admin key:
  the console listing Vast's client uses) and ``/api/v0/endpoints[/<name>]`` (admin key).
- ``status_api``: ``GET /api/v0/status``, ``GET /api/v0/history``, ``GET /`` (the
  status page), ``GET /metrics``.

Every handler raises ``HTTPFacingError`` subclasses; ``vespid.web.error_middleware``
renders them. The app's middlewares and ``control.serve``'s runner are ``vespid.guard``'s,
with ``limits`` read from the settings, as on every port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import web

from vespid.control.autoscaler import Autoscaler
from vespid.control.endpoint_api import EndpointApi
from vespid.control.fleet import Fleet
from vespid.control.history import History
from vespid.control.keys import ControlKeys, load_keys
from vespid.control.metrics import ControlMetrics
from vespid.control.models import EndpointConfig, load_endpoints_file, revise
from vespid.control.providers.base import Provider
from vespid.control.report_api import ReportApi
from vespid.control.route_api import RouteApi
from vespid.control.router import Router
from vespid.control.settings import ControlSettings
from vespid.control.status_api import StatusApi
from vespid.control.store import Store
from vespid.guard import ConnectionLimits, MalformedLog, guard_middlewares
from vespid.protocol.signing import Signer

__all__ = ["ControlPlane"]

log = logging.getLogger("vespid.control")

MAX_BODY_BYTES = 1024 * 1024
# Request numbers kept in reserve in the store beyond the last one given, so a run that
# ends without closing (a crash, kill -9) never makes the next one reuse a number: a
# route signed again with the same fields would be refused as a replay by its worker.
REQUEST_IDX_AHEAD = 100_000


class ControlPlane:
    """Endpoints, fleet, router and autoscaler, behind one aiohttp app.

    ``open`` must run first; the parts it builds (``router``, ``history``,
    ``autoscaler``, ``keys``) are attributes for tests, the demo and the bench to read.
    """

    def __init__(self, settings: ControlSettings, store: Store, provider: Provider) -> None:
        self.settings = settings
        self.store = store
        self.provider = provider
        self.metrics = ControlMetrics()
        self.fleet = Fleet()
        self.endpoints: dict[str, EndpointConfig] = {}
        self.url = ""
        self.keys: ControlKeys
        self.router: Router
        self.history: History
        self.autoscaler: Autoscaler
        self._loops: list[asyncio.Task[None]] = []  # autoscaler, history, request numbers
        self._reserved_idx = 1  # the request number kept in the store
        # What a connection may make the port hold, and the log of what was refused.
        self.limits = ConnectionLimits.of(settings)
        self.malformed = MalformedLog(log)

    # -- what callers read ---------------------------------------------------------

    @property
    def admin_key(self) -> str:
        return self.keys.admin_key

    @property
    def public_key_pem(self) -> bytes:
        return self.keys.public_key_pem

    @property
    def scaling_log(self) -> list[dict[str, Any]]:
        """The latest workers started and stopped, with the reasons, oldest first."""
        return self.autoscaler.scaling_log

    # -- start-up and shutdown -----------------------------------------------------

    async def open(self, url: str) -> None:
        """Load state (creating keys on first start), apply the endpoints file, clean up."""
        self.url = self.settings.public_url or url
        self.keys = await load_keys(self.store, self.settings)
        signer = Signer(self.keys.router_key, ttl_s=self.settings.signature_ttl_s)
        self.router = Router(self.fleet, signer, max_queued=self.settings.max_queued)
        first_idx = int(await self.store.meta_or_create("next_request_idx", lambda: "1"))
        # Both counters go on from the kept one: reqnum too is a signed field.
        self.router.next_request_idx = self.router.next_reqnum = first_idx
        self._reserved_idx = first_idx
        await self._reserve_request_idx()
        self.history = History(self.endpoints, self.fleet, self.router)
        self.autoscaler = Autoscaler(
            self.settings, self.store, self.provider, self.endpoints, self.fleet,
            self.router, self.history, self.metrics, self.keys, url=self.url,
            next_worker_id=int(await self.store.meta_or_create("next_worker_id", lambda: "1")),
        )  # fmt: skip
        await self._load_endpoints()
        await self.autoscaler.rollouts.load(self.endpoints)
        await self.provider.open()
        await self._readopt()
        log.info("control plane ready at %s with %d endpoint(s)", self.url, len(self.endpoints))

    async def _readopt(self) -> None:
        """Take back the workers an earlier run left running: each one whose endpoint
        still exists and whose processes the provider proves are the ones that run
        started keeps its id (so its report token and request key, derived from the
        kept secrets, stay valid), and its drain if it was draining; what is left of the
        others is stopped and forgotten."""
        adopted = 0
        draining = await self.store.draining()
        for handle in await self.store.workers():
            if not handle.url:
                why = "kept by an older vespid"
            elif handle.endpoint not in self.endpoints:
                why = f"endpoint {handle.endpoint} is gone"
            elif await self.provider.adopt(handle):
                self.autoscaler.adopt(handle, draining=handle.worker_id in draining)
                adopted += 1
                continue
            else:
                why = "its processes exited or are not the ones it started"
            await self.provider.cleanup(handle.info)
            await self.store.delete_worker(str(handle.worker_id))
            log.info("worker %d left by an earlier run not adopted (%s)", handle.worker_id, why)
        if adopted:
            log.info("adopted %d worker(s) left running by an earlier run", adopted)

    async def _load_endpoints(self) -> None:
        """The stored endpoints, then the endpoints file's (which win, and are kept)."""
        for endpoint in await self.store.endpoints():
            self.endpoints[endpoint.name] = endpoint
        if self.settings.endpoints_file is not None:
            for endpoint in await asyncio.to_thread(
                load_endpoints_file, self.settings.endpoints_file
            ):
                endpoint = revise(self.endpoints.get(endpoint.name), endpoint)
                self.endpoints[endpoint.name] = endpoint
                await self.store.put_endpoint(endpoint)

    async def _reserve_request_idx(self) -> None:
        """Keep the stored request number ``REQUEST_IDX_AHEAD`` beyond the router's, once
        the router has used half of what is reserved."""
        if self.router.next_request_idx > self._reserved_idx - REQUEST_IDX_AHEAD // 2:
            self._reserved_idx = self.router.next_request_idx + REQUEST_IDX_AHEAD
            await self.store.set_meta("next_request_idx", str(self._reserved_idx))

    async def _keep_request_idx_reserved(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self._reserve_request_idx()
            except Exception:  # the store failing must not end the reservation
                log.exception("keeping request numbers reserved failed")

    def build_app(self) -> web.Application:
        middlewares = guard_middlewares(
            self.limits, MAX_BODY_BYTES, "the control plane's limit", read_bodies=True
        )
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=middlewares)
        routes = app.router
        route_api = RouteApi(
            self.endpoints, self.router, self.keys, self.metrics, self.autoscaler,
            hold_s=self.settings.route_hold_s, max_cost=self.settings.max_route_cost,
        )  # fmt: skip
        route_api.add_routes(routes)
        self.autoscaler.on_capacity = route_api.notify_capacity
        ReportApi(
            self.fleet, self.metrics, self.history, self.keys, route_api.notify_capacity
        ).add_routes(routes)
        EndpointApi(
            self.endpoints, self.store, self.autoscaler, admin_key=self.keys.admin_key,
            admin_key_file=self.settings.state_dir / "admin.key",
        ).add_routes(routes)  # fmt: skip
        StatusApi(
            self.endpoints, self.fleet, self.router, self.history, self.metrics,
            self.autoscaler.scaling_log, self.autoscaler.rollout_status,
        ).add_routes(routes)  # fmt: skip
        return app

    def start_autoscaler(self) -> None:
        """Start the autoscaler loop, the history's sampling and the request numbers'
        reservation."""
        self._loops += [
            asyncio.create_task(self.autoscaler.run()),
            asyncio.create_task(self.history.run()),
            asyncio.create_task(self._keep_request_idx_reserved()),
        ]

    async def close(self) -> None:
        for loop_task in self._loops:
            loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop_task
        await self.autoscaler.close()
        if self.settings.stop_workers_on_exit:
            await self.provider.close()
            for record in list(self.fleet.workers.values()):
                await self.store.delete_worker(str(record.worker_id))
        else:  # left running and kept in the store: the next start adopts them
            await self.provider.release()
        await self.store.set_meta("next_request_idx", str(self.router.next_request_idx))
        await self.store.close()
