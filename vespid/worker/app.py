"""The worker's HTTP app: the generic passthrough, its own routes, sessions and start-up
hooks (``vespid.worker.serve`` puts it on the worker port).

Routes the worker answers itself: ``GET /metrics`` (Prometheus) and
``GET /metrics/backend`` (the backend's own ``/metrics``, fetched on demand), plus any
plain ``routes`` it is given. Routes with a handler (``vespid.handlers``) are parsed,
weighed and shaped by it. Every other path and method is passed through to
``BACKEND_URL`` + the same path and query: ``POST`` bodies are the ``{"auth_data",
"payload", "session_id"?}`` envelope and the backend gets ``payload``; requests that
carry auth_data as JSON in the ``X-Vespid-Auth`` header instead (any method) send the
body as it came. With ``VESPID_RAW_REQUESTS`` (development, unsecured only) a POST body
that is not an envelope is taken whole as the payload, with no auth_data at all.

With ``VESPID_TASKS`` the backend is the task server (``vespid.tasks.server``), which
the worker starts on 127.0.0.1 before anything else and stops last.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import aiohttp
import orjson
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from vespid.errors import (
    BackendError,
    BackendUnavailable,
    BadRequest,
    BodyTooLarge,
    ConfigError,
    HTTPFacingError,
    NotFound,
    NotReady,
    PayloadInvalid,
    RequestInvalid,
    SessionGone,
    Unauthorized,
)
from vespid.handlers.base import Handler
from vespid.handlers.loader import check_handlers, load_handlers
from vespid.protocol.signing import Verifier, load_public_key
from vespid.protocol.wire import (
    AUTH_FIELDS,
    AUTH_HEADER,
    PUBKEY_PATH,
    SESSION_HEADER,
    UPDATE_PATH,
    AuthData,
    dumps,
    parse_auth_data,
    parse_worker_request,
)
from vespid.types import BenchmarkFunction
from vespid.worker.admission import Admission
from vespid.worker.benchmark import benchmark_spec, load_benchmark
from vespid.worker.books import Books, Outcome
from vespid.worker.front import Front
from vespid.worker.lifecycle import Lifecycle
from vespid.worker.metrics import WorkerMetrics
from vespid.worker.null import CONTROL_HOST, build_control_app
from vespid.worker.proxy import PREPARED_KEY, BackendProxy
from vespid.worker.reporter import Reporter
from vespid.worker.sessions import Session, SessionManager, parse_session_ref
from vespid.worker.settings import WorkerSettings

if TYPE_CHECKING:
    from vespid.tasks.server import TaskServer

__all__ = ["Worker", "error_response"]

log = logging.getLogger("vespid.worker")
req_log = logging.getLogger("vespid.request")

JSON_HEADERS: Final = {"Content-Type": "application/json"}
PASSED_REQUEST_HEADERS: Final = ("Content-Type", "Accept")
UNDECODED: Final = object()  # Parsed.payload when the body was not decoded as JSON
PARSE_ERRORS: Final = (ValueError, TypeError, KeyError, IndexError)
Respond = Callable[[web.Request, aiohttp.ClientResponse], Awaitable[web.StreamResponse]]


def error_response(exc: HTTPFacingError) -> web.Response:
    return web.Response(
        body=orjson.dumps(exc.body()), status=exc.status_code, content_type="application/json"
    )


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
    raw: dict[str, Any] = {name: "" for name in AUTH_FIELDS}
    raw.update(cost=0, endpoint=path, reqnum=0, request_idx=0)
    return AuthData(raw=raw, cost=0.0, endpoint=path, reqnum=0, request_idx=0, signature="", url="")


def _decode(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return UNDECODED


class Worker:
    """One worker: the app, its books, and the tasks that run beside it."""

    def __init__(
        self,
        settings: WorkerSettings,
        *,
        handlers: Sequence[Handler[Any]] = (),
        routes: Sequence[web.RouteDef] = (),
        benchmark: BenchmarkFunction | None = None,
    ) -> None:
        self.settings = settings
        self.handlers = check_handlers([*load_handlers(settings.handlers), *handlers])
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
        # The router's RSA key arrives later (fetched) unless given in a file; an HMAC
        # request key, when the control plane handed one out, works from the start.
        self.verifier: Verifier | None = None
        if not settings.unsecured:
            self.verifier = Verifier(
                None,
                own_url=settings.public_url,
                request_key=settings.request_key_bytes,
                accept_vast=settings.accept_vast_signatures,
            )
        self._key_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._aux: aiohttp.ClientSession | None = None
        self.lifecycle: Lifecycle
        self._benchmark = benchmark or load_benchmark(
            benchmark_spec(settings.benchmark, settings.backend)
        )
        self.reporter: Reporter
        self.sessions = SessionManager(settings, self.books)
        self.update = asyncio.Event()  # set by /pyworker/update: drain, then exit
        self.front: Front | None = None  # the lean front serving the port, if any
        self._side_runners: list[web.AppRunner] = []
        self.http_port: int | None = None  # where /session/end is served over plain HTTP
        self.control_port: int | None = None  # the null worker's 127.0.0.1 control server
        self.tasks: TaskServer | None = None
        self.on_cleanup: list[Callable[[], Awaitable[None]]] = []  # run last, at shutdown
        if settings.public_key_file is not None:
            try:
                pem = settings.public_key_file.read_bytes()
            except OSError as exc:
                raise ConfigError(f"VESPID_PUBLIC_KEY_FILE: cannot read ({exc})") from None
            self._use_key(load_public_key(pem, "VESPID_PUBLIC_KEY_FILE"))

    # -- set-up ------------------------------------------------------------

    def _use_key(self, key: rsa.RSAPublicKey) -> None:
        if self.verifier is not None:
            self.verifier.public_key = key
        self._key_ready.set()

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_body_bytes)
        app.router.add_get("/metrics", self.handle_metrics)
        app.router.add_get("/metrics/backend", self.handle_backend_metrics)
        app.router.add_post(UPDATE_PATH, self.handle_update)
        app.router.add_post("/session/create", self.handle_session_create)
        app.router.add_post("/session/get", self.handle_session_get)
        app.router.add_post("/session/health", self.handle_session_health)
        app.router.add_post("/session/end", self.handle_session_end)
        app.router.add_routes(self.routes)
        for handler in self.handlers:
            app.router.add_route(handler.method, handler.path, self._handler_route(handler))
        if any(h.custom_response for h in self.handlers):
            app.on_response_prepare.append(_mark_prepared)
        app.router.add_route("*", "/{path:.*}", self.handle)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        if self.settings.tasks is not None:
            from vespid.tasks.server import start_task_backend

            self.tasks, self.settings = await start_task_backend(self.settings)
            self.proxy.base_url = self.settings.backend_url
        self._aux = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        self.lifecycle = Lifecycle(self.settings, self._aux, self.metrics, self._benchmark)
        self.reporter = Reporter(
            self.settings,
            self.books,
            self.admission,
            self.lifecycle,
            self._aux,
            self.sessions.sessions,
        )
        self._spawn(self.lifecycle.run())
        if self.settings.report_addr:
            self._spawn(self.reporter.run())
        if self.verifier is not None and self.verifier.public_key is None:
            if self.settings.report_addr:
                self._spawn(self._fetch_key())
            else:
                log.warning(
                    "no REPORT_ADDR or VESPID_PUBLIC_KEY_FILE: only HMAC-tagged requests "
                    "(VESPID_REQUEST_KEY) can be checked; RSA-signed ones get 401"
                )
        self._spawn(self.sessions.expire_forever())
        end_only = web.Application(client_max_size=64 * 1024)
        end_only.router.add_post("/session/end", self.handle_session_end)
        self.http_port = await self._serve_side(
            end_only, self.settings.host, self.settings.http_port
        )
        if self.settings.backend == "null":
            control = build_control_app(self.sessions, self.settings)
            self.control_port = await self._serve_side(
                control, CONTROL_HOST, self.settings.null_control_port
            )

    async def _serve_side(self, app: web.Application, host: str, port: int) -> int:
        """Serve a small extra app; returns the port it listens on."""
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._side_runners.append(runner)
        await web.TCPSite(runner, host, port).start()
        bound: int = runner.addresses[0][1]
        return bound

    def _spawn(self, coro: Coroutine[None, None, None]) -> None:
        self._tasks.append(asyncio.create_task(coro))

    async def _on_cleanup(self, app: web.Application) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.sessions.shutdown()
        for runner in self._side_runners:
            await runner.cleanup()
        self._side_runners.clear()
        await self.proxy.close()
        if self._aux is not None:
            await self._aux.close()
        if self.tasks is not None:
            await self.tasks.stop()
        for callback in self.on_cleanup:
            await callback()

    async def _fetch_key(self) -> None:
        """Fetch the router's public key from REPORT_ADDR/pubkey/, with backoff."""
        assert self._aux is not None
        delay_s = 0.2
        while True:
            for addr in self.settings.report_addr:
                try:
                    async with self._aux.get(
                        addr + PUBKEY_PATH, timeout=aiohttp.ClientTimeout(total=10)
                    ) as resp:
                        pem = await resp.read()
                        if resp.status == 200:
                            self._use_key(load_public_key(pem, f"{addr}{PUBKEY_PATH}"))
                            log.info("router public key loaded from %s", addr)
                            return
                        log.warning("%s%s answered %d", addr, PUBKEY_PATH, resp.status)
                except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                    log.warning("fetching the public key from %s failed: %s", addr, exc)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 10.0)

    # -- the worker's own routes ---------------------------------------------

    async def handle_metrics(self, request: web.Request) -> web.Response:
        self.metrics.queue_depth.set(self.admission.queue_depth)
        return web.Response(body=self.metrics.render(), content_type="text/plain")

    async def handle_update(self, request: web.Request) -> web.Response:
        """``POST /pyworker/update`` with ``Authorization: Bearer $MASTER_TOKEN``: finish the
        requests in flight, then exit, so the supervisor restarts the worker on new code.
        Refused when MASTER_TOKEN is unset: never an open door."""
        token = self.settings.master_token
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not token or not hmac.compare_digest(given.encode(), token.encode()):
            return error_response(
                Unauthorized(
                    "rolling updates need Authorization: Bearer <MASTER_TOKEN>"
                    + ("" if token else " (this worker has no MASTER_TOKEN, so none is accepted)")
                )
            )
        self.update.set()
        return web.json_response({"updating": True}, status=202)

    async def handle_backend_metrics(self, request: web.Request) -> web.Response:
        try:
            resp, body = await self.proxy.fetch("GET", "/metrics")
        except BackendError as exc:
            return error_response(BackendUnavailable(f"backend /metrics unreachable: {exc}"))
        return web.Response(body=body, status=resp.status, content_type=resp.content_type or None)

    # -- passthrough -------------------------------------------------------

    async def _read(self, request: web.Request) -> bytes:
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise BodyTooLarge(
                f"request body is larger than VESPID_MAX_BODY_BYTES "
                f"({self.settings.max_body_bytes} bytes)",
                max_body_bytes=self.settings.max_body_bytes,
            ) from None

    async def _parse(self, request: web.Request) -> Parsed:
        """Read and check one request: auth_data, the bytes for the backend, headers,
        and the session it rides, if any."""
        body = await self._read(request)
        if request.method == "POST" and AUTH_HEADER not in request.headers:
            if self.settings.raw_requests:
                value = _decode(body)
                if not (isinstance(value, dict) and "auth_data" in value and "payload" in value):
                    headers = {
                        h: request.headers[h]
                        for h in PASSED_REQUEST_HEADERS
                        if h in request.headers
                    }
                    return Parsed(_anonymous(request.path), body, headers, None, value)
            parsed = parse_worker_request(body)
            return Parsed(
                parsed.auth, dumps(parsed.payload), JSON_HEADERS, parsed.session_id, parsed.payload
            )
        raw = request.headers.get(AUTH_HEADER)
        if raw is None:
            raise RequestInvalid(
                f"{request.method} requests carry auth_data as JSON in the {AUTH_HEADER} header",
                fields={AUTH_HEADER: "missing"},
            )
        try:
            auth_value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise RequestInvalid(
                f"{AUTH_HEADER} header is not valid JSON", fields={AUTH_HEADER: "invalid JSON"}
            ) from None
        headers = {h: request.headers[h] for h in PASSED_REQUEST_HEADERS if h in request.headers}
        session_id = request.headers.get(SESSION_HEADER)
        return Parsed(parse_auth_data(auth_value), body, headers, session_id)

    async def _check(self, auth: AuthData, *, presented_by_session: bool = False) -> None:
        """Verify the signature (unless the auth_data is its session's own), then wait
        until ready."""
        verifier = self.verifier
        if verifier is not None and not presented_by_session:
            if verifier.needs_public_key(auth) and self.settings.report_addr:
                try:
                    async with asyncio.timeout(self.settings.ready_wait_s):
                        await self._key_ready.wait()
                except TimeoutError:
                    raise NotReady("the router's public key is not loaded yet; retry") from None
            verifier.verify(auth)
        await self.lifecycle.wait_ready()
        self.admission.max_perf = self.lifecycle.max_perf

    def _handler_route(
        self, handler: Handler[Any]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def route(request: web.Request) -> web.StreamResponse:
            return await self.handle(request, handler)

        return route

    def _call(self, request: web.Request, parsed: Parsed, handler: Handler[Any] | None) -> Call:
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

    async def accept(self, auth: AuthData, session_id: str | None) -> Session | None:
        """Check a parsed request and find the session it rides, if any; raises
        HTTPFacingError when it is refused."""
        if session_id is None:
            await self._check(auth)
            session = None
        else:
            # A request may ride its session with the auth_data that opened it (already
            # verified, then; its signature would otherwise count as a replay) or with a
            # freshly signed one.
            session = self.sessions.lookup(session_id)
            await self._check(auth, presented_by_session=session.owns(auth))
            self.sessions.touch(session)
        if session is None and self.settings.backend == "null":
            raise NotFound(
                "this is a null worker: it has no model server; open a session with "
                "/session/create, then send requests with its session_id"
            )
        return session

    async def handle(
        self, request: web.Request, handler: Handler[Any] | None = None
    ) -> web.StreamResponse:
        started = time.monotonic()
        try:
            parsed = await self._parse(request)
            session = await self.accept(parsed.auth, parsed.session_id)
            call = self._call(request, parsed, handler)
        except HTTPFacingError as exc:
            self.metrics.count_request(exc.status_code, "refused")
            self.log_request(
                request.method, request.path, exc.status_code, "refused", None, started, exc.message
            )
            return error_response(exc)
        auth = parsed.auth
        if session is not None and self.settings.backend == "null":
            self.log_request(request.method, request.path, 200, "session", auth, started, None)
            return web.json_response(
                {"session_id": session.session_id, "expiration": session.expiration}
            )
        ticket = self.books.receive(auth.request_idx, call.workload, is_session=session is not None)
        task = asyncio.current_task()
        if session is not None and task is not None:
            session.requests.add(task)
        status = 499
        outcome: Outcome | None = Outcome.CANCELLED
        try:
            await self.admission.enter(ticket)
            try:
                result = await self.proxy.forward(
                    request, call.method, call.path_qs, call.body, call.headers, call.respond
                )
            finally:
                self.admission.leave(ticket)
            status = result.status
            outcome = (
                Outcome.ERROR if result.broken else Outcome.CANCELLED if result.cancelled else None
            )
            return result.response
        except HTTPFacingError as exc:
            status, outcome = exc.status_code, None
            return error_response(exc)
        finally:
            if session is not None and task is not None:
                session.requests.discard(task)
            recorded = self.books.finish(ticket, status, outcome)
            self.log_request(
                request.method, request.path, status, recorded.value, auth, started, None
            )

    # -- sessions ----------------------------------------------------------

    async def handle_session_create(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        try:
            parsed = parse_worker_request(await self._read(request))
            await self._check(parsed.auth)
            session = self.sessions.create(parsed.auth, parsed.payload)
        except HTTPFacingError as exc:
            self.metrics.requests.labels(str(exc.status_code), "refused").inc()
            self.log_request(
                request.method, request.path, exc.status_code, "refused", None, started, exc.message
            )
            return error_response(exc)
        self.log_request(request.method, request.path, 201, "session", parsed.auth, started, None)
        return web.json_response(
            {"session_id": session.session_id, "expiration": session.expiration}, status=201
        )

    async def _session_ref(self, request: web.Request) -> tuple[str, Session | None]:
        session_id, session_auth = parse_session_ref(await self._read(request))
        return session_id, self.sessions.authorised(session_id, session_auth)

    async def handle_session_get(self, request: web.Request) -> web.Response:
        try:
            session_id, session = await self._session_ref(request)
            if session is None:
                raise SessionGone(f"session {session_id!r} is unknown or closed")
        except HTTPFacingError as exc:
            return error_response(exc)
        return web.json_response(session.describe())

    async def handle_session_health(self, request: web.Request) -> web.Response:
        try:
            _, session = await self._session_ref(request)
        except HTTPFacingError as exc:
            return error_response(exc)
        return web.json_response({"ok": session is not None})

    async def handle_session_end(self, request: web.Request) -> web.Response:
        try:
            session_id, session = await self._session_ref(request)
            if session is None:
                raise BadRequest(f"session {session_id!r} is unknown or already ended")
        except HTTPFacingError as exc:
            return error_response(exc)
        self.sessions.close(session, "ended")
        return web.json_response({"ended": True, "removed_session": session_id})

    def log_request(
        self,
        method: str,
        path: str,
        status: int,
        outcome: str,
        auth: AuthData | None,
        started: float,
        error: str | None,
    ) -> None:
        if not req_log.isEnabledFor(logging.INFO):
            return
        fields: dict[str, object] = {
            "method": method,
            "path": path,
            "status": status,
            "outcome": outcome,
            "ms": round((time.monotonic() - started) * 1000, 2),
        }
        if auth is not None:
            fields["request_idx"] = auth.request_idx
            fields["cost"] = auth.cost
        if error is not None:
            fields["error"] = error
        req_log.info("request", extra={"fields": fields})


async def _mark_prepared(request: web.Request, response: web.StreamResponse) -> None:
    """Note that an answer has started, so a handler's failure after it cuts the
    connection instead of sending a second answer."""
    request[PREPARED_KEY] = response
