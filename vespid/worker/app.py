"""The worker's HTTP server: the generic passthrough, its own routes, and start-up.

Routes the worker answers itself: ``GET /metrics`` (Prometheus) and
``GET /metrics/backend`` (the backend's own ``/metrics``, fetched on demand).
Every other path and method is passed through to ``BACKEND_URL`` + the same path
and query: ``POST`` bodies are the ``{"auth_data", "payload", "session_id"?}``
envelope and the backend gets ``payload``; other methods carry auth_data as JSON in
the ``X-Vespid-Auth`` header and the backend gets the body as sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Coroutine
from typing import Final

import aiohttp
import orjson
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from vespid.errors import (
    BackendError,
    BackendUnavailable,
    BodyTooLarge,
    ConfigError,
    HTTPFacingError,
    NotReady,
    RequestInvalid,
    SessionGone,
)
from vespid.protocol.signing import Verifier, load_public_key
from vespid.protocol.wire import (
    AUTH_HEADER,
    PUBKEY_PATH,
    AuthData,
    dumps,
    parse_auth_data,
    parse_worker_request,
)
from vespid.worker.admission import Admission
from vespid.worker.benchmark import DEFAULT_BENCHMARK, load_benchmark
from vespid.worker.books import Books, Outcome
from vespid.worker.lifecycle import Lifecycle
from vespid.worker.metrics import WorkerMetrics
from vespid.worker.proxy import BackendProxy
from vespid.worker.reporter import Reporter
from vespid.worker.settings import WorkerSettings

__all__ = ["Worker", "error_response", "serve"]

log = logging.getLogger("vespid.worker")
req_log = logging.getLogger("vespid.request")

JSON_HEADERS: Final = {"Content-Type": "application/json"}
PASSED_REQUEST_HEADERS: Final = ("Content-Type", "Accept")


def error_response(exc: HTTPFacingError) -> web.Response:
    return web.Response(
        body=orjson.dumps(exc.body()), status=exc.status_code, content_type="application/json"
    )


class Worker:
    """One worker: the app, its books, and the tasks that run beside it."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.metrics = WorkerMetrics()
        self.books = Books(self.metrics, keep_finished=bool(settings.report_addr))
        limit = 1 if not settings.allow_parallel else settings.max_concurrency
        self.admission = Admission(
            limit=limit, max_wait_s=settings.max_wait_time_s, metrics=self.metrics
        )
        self.proxy = BackendProxy(
            settings.backend_url, limit=limit, read_timeout_s=settings.backend_read_timeout_s
        )
        self.verifier: Verifier | None = None
        self._key_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._aux: aiohttp.ClientSession | None = None
        self.lifecycle: Lifecycle
        self._benchmark = load_benchmark(settings.benchmark or DEFAULT_BENCHMARK)
        self.reporter: Reporter
        if settings.public_key_file is not None:
            try:
                pem = settings.public_key_file.read_bytes()
            except OSError as exc:
                raise ConfigError(f"VESPID_PUBLIC_KEY_FILE: cannot read ({exc})") from None
            self._use_key(load_public_key(pem, "VESPID_PUBLIC_KEY_FILE"))

    # -- set-up ------------------------------------------------------------

    def _use_key(self, key: rsa.RSAPublicKey) -> None:
        self.verifier = Verifier(
            key,
            own_url=self.settings.public_url,
            accept_vast=self.settings.accept_vast_signatures,
        )
        self._key_ready.set()

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_body_bytes)
        app.router.add_get("/metrics", self.handle_metrics)
        app.router.add_get("/metrics/backend", self.handle_backend_metrics)
        app.router.add_route("*", "/{path:.*}", self.handle)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        self._aux = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        self.lifecycle = Lifecycle(self.settings, self._aux, self.metrics, self._benchmark)
        self.reporter = Reporter(
            self.settings, self.books, self.admission, self.lifecycle, self._aux
        )
        self._spawn(self.lifecycle.run())
        if self.settings.report_addr:
            self._spawn(self.reporter.run())
        if self.verifier is None and not self.settings.unsecured:
            self._spawn(self._fetch_key())

    def _spawn(self, coro: Coroutine[None, None, None]) -> None:
        self._tasks.append(asyncio.create_task(coro))

    async def _on_cleanup(self, app: web.Application) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.proxy.close()
        if self._aux is not None:
            await self._aux.close()

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

    async def handle_backend_metrics(self, request: web.Request) -> web.Response:
        try:
            resp, body = await self.proxy.fetch("GET", "/metrics")
        except BackendError as exc:
            return error_response(BackendUnavailable(f"backend /metrics unreachable: {exc}"))
        return web.Response(body=body, status=resp.status, content_type=resp.content_type or None)

    # -- passthrough -------------------------------------------------------

    async def _parse(self, request: web.Request) -> tuple[AuthData, bytes, dict[str, str]]:
        """Read and check one request: its auth_data, the bytes for the backend, headers."""
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise BodyTooLarge(
                f"request body is larger than VESPID_MAX_BODY_BYTES "
                f"({self.settings.max_body_bytes} bytes)",
                max_body_bytes=self.settings.max_body_bytes,
            ) from None
        if request.method == "POST":
            parsed = parse_worker_request(body)
            if parsed.session_id is not None:
                raise SessionGone(f"unknown session_id {parsed.session_id!r}")
            return parsed.auth, dumps(parsed.payload), JSON_HEADERS
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
        return parse_auth_data(auth_value), body, headers

    async def _check(self, auth: AuthData) -> None:
        if not self.settings.unsecured:
            if self.verifier is None:
                try:
                    async with asyncio.timeout(self.settings.ready_wait_s):
                        await self._key_ready.wait()
                except TimeoutError:
                    raise NotReady("the router's public key is not loaded yet; retry") from None
            assert self.verifier is not None
            self.verifier.verify(auth)
        await self.lifecycle.wait_ready()
        self.admission.max_perf = self.lifecycle.max_perf

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        try:
            auth, body, headers = await self._parse(request)
            await self._check(auth)
        except HTTPFacingError as exc:
            self.metrics.count_request(exc.status_code, "refused")
            self._log(request, exc.status_code, "refused", None, started, exc.message)
            return error_response(exc)
        ticket = self.books.receive(auth.request_idx, auth.cost)
        status = 499
        outcome: Outcome | None = Outcome.CANCELLED
        try:
            await self.admission.enter(ticket)
            try:
                result = await self.proxy.forward(
                    request, request.method, request.path_qs, body, headers
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
            recorded = self.books.finish(ticket, status, outcome)
            self._log(request, status, recorded.value, auth, started, None)

    def _log(
        self,
        request: web.Request,
        status: int,
        outcome: str,
        auth: AuthData | None,
        started: float,
        error: str | None,
    ) -> None:
        if not req_log.isEnabledFor(logging.INFO):
            return
        fields: dict[str, object] = {
            "method": request.method,
            "path": request.path,
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


def _ssl_context(settings: WorkerSettings) -> ssl.SSLContext | None:
    if not settings.use_ssl:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(settings.ssl_cert_file, settings.ssl_key_file)
    return ctx


async def serve(settings: WorkerSettings, *, stop: asyncio.Event | None = None) -> None:
    """Run a worker until ``stop`` is set (or forever)."""
    if settings.unsecured:
        log.warning("!" * 72)
        log.warning("UNSECURED=true: signatures are NOT checked. Never expose this worker.")
        log.warning("!" * 72)
    worker = Worker(settings)
    runner = web.AppRunner(worker.build_app(), access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(
        runner, settings.host, settings.worker_port, ssl_context=_ssl_context(settings)
    )
    await site.start()
    log.info(
        "worker listening",
        extra={
            "fields": {
                "host": settings.host,
                "port": settings.worker_port,
                "backend": settings.backend_url,
            }
        },
    )
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.cleanup()
