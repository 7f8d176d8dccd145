"""The worker: its parts, its aiohttp app (the passthrough, handlers' routes, its own
routes, sessions), and the tasks that run beside it (``vespid.worker.serve`` runs it).

Routes the worker answers itself (``Worker.own_routes``, the one table both servers
use): ``GET /metrics`` (Prometheus), ``GET /metrics/backend`` (the backend's own
``/metrics``, fetched on demand), ``POST /pyworker/update`` (a rolling update),
``POST /vespid/park`` and ``POST /vespid/wake`` (``vespid.worker.parking``), and
``/session/create|get|health|end``, plus any plain ``routes`` it is given. Routes with
a handler (``vespid.handlers``) are parsed, weighed and shaped by it. Every other path
and method is passed through to ``BACKEND_URL`` + the same path and query (how a
request is read: ``vespid.worker.intake``; what it goes through:
``vespid.worker.pipeline``). Every app here renders errors with
``vespid.web.error_middleware``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Final

import aiohttp
from aiohttp import web

from vespid.errors import BackendError, BackendUnavailable, BadRequest, SessionGone, Unauthorized
from vespid.guard import ConnectionLimits, MalformedLog, guard_middlewares, read_body
from vespid.handlers.base import Handler
from vespid.handlers.loader import check_handlers, load_handlers
from vespid.protocol.wire import PARK_PATH, UPDATE_PATH, WAKE_PATH, parse_worker_request
from vespid.types import BenchmarkFunction
from vespid.web import bearer_token, json_response, same_secret
from vespid.worker.admission import Admission
from vespid.worker.benchmark import benchmark_spec, load_benchmark
from vespid.worker.books import Books, Outcome
from vespid.worker.intake import backend_call, parse_request
from vespid.worker.lifecycle import Lifecycle
from vespid.worker.metrics import WorkerMetrics
from vespid.worker.orphan import OrphanWatch
from vespid.worker.parking import Parking
from vespid.worker.pipeline import Flight, Pipeline
from vespid.worker.proxy import PREPARED_KEY, BackendProxy, RelayResult
from vespid.worker.reporter import Reporter
from vespid.worker.router_key import RouterKey
from vespid.worker.sessions import Session, SessionManager, parse_session_ref
from vespid.worker.settings import WorkerSettings
from vespid.worker.sleep import make_sleep_hook

__all__ = ["Worker"]

log = logging.getLogger("vespid.worker")

SESSION_END_MAX_BODY_BYTES: Final = 64 * 1024


def _relay_outcome(result: RelayResult) -> Outcome | None:
    """How a relayed answer ended when its status does not say: broken or cancelled."""
    if result.broken:
        return Outcome.ERROR
    return Outcome.CANCELLED if result.cancelled else None


class Worker:
    """One worker, built with its final settings: its parts, its apps, its tasks."""

    def __init__(
        self,
        settings: WorkerSettings,
        *,
        handlers: Sequence[Handler[Any]] = (),
        routes: Sequence[web.RouteDef] = (),
        benchmark: BenchmarkFunction | None = None,
    ) -> None:
        self.settings = settings
        # What can fail on a bad setting comes first, before anything needs closing.
        self.handlers = check_handlers([*load_handlers(settings.handlers), *handlers])
        benchmark = benchmark or load_benchmark(
            benchmark_spec(settings.benchmark, settings.backend)
        )
        self.router_key = RouterKey(settings)
        self.limits = ConnectionLimits.of(settings)
        self.malformed = MalformedLog(log)  # one line a few seconds for malformed requests
        self.routes = list(routes)
        self.metrics = WorkerMetrics()
        self.books = Books(self.metrics, keep_finished=bool(settings.report_addr))
        limit = 1 if not settings.allow_parallel else settings.max_concurrency
        self.admission = Admission(
            limit=limit, max_wait_s=settings.max_wait_time_s, metrics=self.metrics
        )
        self.proxy = BackendProxy(
            settings.backend_url, limit=limit, read_timeout_s=settings.backend_read_timeout_s
        )
        # The worker's own HTTP client: probes, benchmark, reports, the key fetch.
        self.control_client = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        self.lifecycle = Lifecycle(settings, self.control_client, self.metrics, benchmark)
        self.sessions = SessionManager(settings, self.books)
        self.parking = Parking(
            self.lifecycle,
            self.admission,
            make_sleep_hook(settings, self.control_client),
            settings.wake_timeout_s,
        )
        self.reporter = Reporter(
            settings,
            self.books,
            self.lifecycle,
            self.control_client,
            self.sessions.sessions,
            self.admission,
        )
        # Set when the control plane has not answered reports for VESPID_ORPHAN_TIMEOUT.
        self.orphaned = asyncio.Event()
        self.pipeline = Pipeline(
            settings,
            router_key=self.router_key,
            lifecycle=self.lifecycle,
            admission=self.admission,
            books=self.books,
            sessions=self.sessions,
            metrics=self.metrics,
        )
        self.update = asyncio.Event()  # set by /pyworker/update: drain, then exit
        # Paths the lean front hands to aiohttp: the same table build_app serves.
        self.own_paths = frozenset(route.path.encode() for route in self.own_routes())
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def max_body_bytes(self) -> int:
        return self.settings.max_body_bytes

    # -- apps ----------------------------------------------------------------

    def own_routes(self) -> list[web.RouteDef]:
        """The routes the worker answers itself, whichever server took the request."""
        return [
            web.get("/metrics", self.handle_metrics),
            web.get("/metrics/backend", self.handle_backend_metrics),
            web.post(UPDATE_PATH, self.handle_rolling_update),
            web.post(PARK_PATH, self.handle_park),
            web.post(WAKE_PATH, self.handle_wake),
            web.post("/session/create", self.handle_session_create),
            web.post("/session/get", self.handle_session_get),
            web.post("/session/health", self.handle_session_health),
            web.post("/session/end", self.handle_session_end),
        ]

    def build_app(self) -> web.Application:
        """The app on the worker port: own routes, given routes, handlers, passthrough."""
        max_bytes = self.settings.max_body_bytes
        middlewares = guard_middlewares(
            self.limits, max_bytes, "VESPID_MAX_BODY_BYTES", read_bodies=False
        )
        app = web.Application(client_max_size=max_bytes, middlewares=middlewares)
        app.router.add_routes(self.own_routes())
        app.router.add_routes(self.routes)
        for handler in self.handlers:
            app.router.add_route(handler.method, handler.path, self._handler_route(handler))
        if any(h.custom_response for h in self.handlers):
            app.on_response_prepare.append(_mark_prepared)
        app.router.add_route("*", "/{path:.*}", self.handle)
        return app

    def build_session_end_app(self) -> web.Application:
        """The plain-HTTP side app (``WORKER_HTTP_PORT``): ``/session/end`` only."""
        middlewares = guard_middlewares(
            self.limits, SESSION_END_MAX_BODY_BYTES, "the /session/end port's limit",
            read_bodies=False,
        )  # fmt: skip
        app = web.Application(client_max_size=SESSION_END_MAX_BODY_BYTES, middlewares=middlewares)
        app.router.add_post("/session/end", self.handle_session_end)
        return app

    # -- the tasks beside the app ----------------------------------------------

    def start(self) -> None:
        """Start the lifecycle, reports, the key fetch and session expiry."""
        self._spawn(self.lifecycle.run())
        if self.settings.report_addr:
            self._spawn(self.reporter.run())
            if self.settings.orphan_timeout_s:
                watch = OrphanWatch(self.settings, self.reporter, self.orphaned)
                self._spawn(watch.run())
        if self.router_key.missing:
            if self.settings.report_addr:
                self._spawn(self.router_key.fetch(self.control_client))
            else:
                log.warning(
                    "no REPORT_ADDR or VESPID_PUBLIC_KEY_FILE: only HMAC-tagged requests "
                    "(VESPID_REQUEST_KEY) can be checked; RSA-signed ones get 401"
                )
        self._spawn(self.sessions.expire_forever())

    def _spawn(self, coro: Coroutine[None, None, None]) -> None:
        self._tasks.append(asyncio.create_task(coro))

    async def close(self) -> None:
        """Stop the tasks, end every session, close the HTTP clients."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.sessions.shutdown()
        await self.proxy.close()
        await self.control_client.close()

    # -- the worker's own routes ---------------------------------------------

    async def handle_metrics(self, request: web.Request) -> web.Response:
        self.metrics.queue_depth.set(self.admission.queue_depth)
        return web.Response(body=self.metrics.render(), content_type="text/plain")

    def _check_master_token(self, request: web.Request, what: str) -> None:
        """Unauthorized (401) unless the request carries ``Authorization: Bearer
        <MASTER_TOKEN>``; always refused when MASTER_TOKEN is unset: never an open door."""
        token = self.settings.master_token
        given = bearer_token(request)
        if given is not None:  # bytes that are not UTF-8 arrive as surrogates
            given = given.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        if not token or not same_secret(given, token):
            raise Unauthorized(
                f"{what} need Authorization: Bearer <MASTER_TOKEN>"
                + ("" if token else " (this worker has no MASTER_TOKEN, so none is accepted)")
            )

    async def handle_rolling_update(self, request: web.Request) -> web.Response:
        """``POST /pyworker/update`` with ``Authorization: Bearer $MASTER_TOKEN``: finish the
        requests in flight, then exit, so the supervisor restarts the worker on new code."""
        self._check_master_token(request, "rolling updates")
        self.update.set()
        return json_response({"updating": True}, status=202)

    async def handle_park(self, request: web.Request) -> web.Response:
        """``POST /vespid/park`` (Bearer MASTER_TOKEN): no new requests, the in-flight
        ones finished, the model server asleep; answers once it is."""
        self._check_master_token(request, "park and wake")
        took = await self.parking.park()
        return json_response({"parked": True, "took_s": round(took, 6)})

    async def handle_wake(self, request: web.Request) -> web.Response:
        """``POST /vespid/wake`` (Bearer MASTER_TOKEN): wake the model server; answers once
        its health check passes and the worker takes requests again."""
        self._check_master_token(request, "park and wake")
        took = await self.parking.wake()
        return json_response({"parked": False, "took_s": round(took, 6)})

    async def handle_backend_metrics(self, request: web.Request) -> web.Response:
        try:
            resp, body = await self.proxy.fetch("GET", "/metrics")
        except BackendError as exc:
            raise BackendUnavailable(f"backend /metrics unreachable: {exc}") from None
        return web.Response(body=body, status=resp.status, content_type=resp.content_type or None)

    # -- passthrough and handlers ---------------------------------------------

    def _handler_route(
        self, handler: Handler[Any]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def route(request: web.Request) -> web.StreamResponse:
            return await self.handle(request, handler)

        return route

    async def handle(
        self, request: web.Request, handler: Handler[Any] | None = None
    ) -> web.StreamResponse:
        """Any request for the backend: read, checked, admitted, relayed, booked."""
        settings = self.settings
        async with Flight(self.pipeline, request.method, request.path, time.monotonic()) as flight:
            parsed = await parse_request(
                request,
                max_body_bytes=settings.max_body_bytes,
                limits=self.limits,
                raw=settings.raw_requests,
                parse_auth=self.pipeline.parse_auth,
            )
            session = await flight.accept(parsed.auth, parsed.session_id)
            call = backend_call(request, parsed, handler)
            if session is not None and settings.backend == "null":
                flight.answered(200, "session")
                return json_response(
                    {"session_id": session.session_id, "expiration": session.expiration}
                )
            await flight.admit(call.workload)
            result = await self.proxy.forward(
                request, call.method, call.path_qs, call.body, call.headers, call.respond
            )
            flight.done(result.status, _relay_outcome(result))
            return result.response

    # -- sessions ----------------------------------------------------------

    async def handle_session_create(self, request: web.Request) -> web.Response:
        async with Flight(self.pipeline, request.method, request.path, time.monotonic()) as flight:
            body = await self._read_body(request)
            parsed = parse_worker_request(body, self.pipeline.parse_auth)
            await self.pipeline.check(parsed.auth)
            session = self.sessions.create(parsed.auth, parsed.payload)
            flight.answered(201, "session", parsed.auth)
        return json_response(
            {"session_id": session.session_id, "expiration": session.expiration}, status=201
        )

    async def _read_body(self, request: web.Request) -> bytes:
        return await read_body(
            request, self.limits, self.settings.max_body_bytes, "VESPID_MAX_BODY_BYTES"
        )

    async def _session_ref(self, request: web.Request) -> tuple[str, Session | None]:
        body = await self._read_body(request)
        session_id, session_auth = parse_session_ref(body)
        return session_id, self.sessions.authorised(session_id, session_auth)

    async def handle_session_get(self, request: web.Request) -> web.Response:
        session_id, session = await self._session_ref(request)
        if session is None:
            raise SessionGone(f"session {session_id!r} is unknown or closed")
        return json_response(session.describe())

    async def handle_session_health(self, request: web.Request) -> web.Response:
        _, session = await self._session_ref(request)
        return json_response({"ok": session is not None})

    async def handle_session_end(self, request: web.Request) -> web.Response:
        session_id, session = await self._session_ref(request)
        if session is None:
            raise BadRequest(f"session {session_id!r} is unknown or already ended")
        self.sessions.close(session, "ended")
        return json_response({"ended": True, "removed_session": session_id})


async def _mark_prepared(request: web.Request, response: web.StreamResponse) -> None:
    """Note that an answer has started, so a handler's failure after it cuts the
    connection instead of sending a second answer."""
    request[PREPARED_KEY] = response
