"""``vespid control``: the router, the autoscaler loop, and the HTTP API around them.

Routes:

- ``POST /route/`` (endpoint API key): route or queue a request (PROTOCOL.md section 5).
- ``GET /pubkey/``: the router's public key (PEM), for workers.
- ``GET /ca.pem``: the control plane's CA certificate (what Vast's client downloads first).
- ``POST /worker_status/``, ``POST /delete_requests/`` (master token): worker reports.
- ``GET /api/v0/endptjobs/`` and ``GET /api/v0/endptjobs/<id>/`` (endpoint API key or
  admin key): the console listing Vast's client uses.
- ``GET|POST /api/v0/endpoints``, ``GET|PUT|DELETE /api/v0/endpoints/<name>`` (admin
  key): manage endpoints.
- ``GET /api/v0/status``: endpoints, workers, queues (for the status page).
- ``GET /api/v0/history``: a sample a second of each endpoint over the last minutes.
- ``GET /``: the status page (``vespid/control/static``).
- ``GET /metrics``: Prometheus.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from vespid.control.fleet import Fleet, WorkerRecord
from vespid.control.history import History
from vespid.control.metrics import ControlMetrics
from vespid.control.models import EndpointConfig, load_endpoints_file
from vespid.control.page import StatusPage
from vespid.control.policy import PolicyState, WorkerPhase, decide
from vespid.control.providers.base import Provider, RunState, WorkerOrder
from vespid.control.router import Router
from vespid.control.settings import ControlSettings
from vespid.control.store import Store
from vespid.control.tls import make_ca_pem
from vespid.errors import (
    HTTPFacingError,
    NotFound,
    RequestInvalid,
    Unauthorized,
)
from vespid.protocol.signing import (
    Signer,
    encode_request_key,
    generate_private_key,
    load_private_key,
    private_key_pem,
    public_key_pem,
    worker_request_key,
)
from vespid.protocol.wire import DELETE_REQUESTS_PATH, PUBKEY_PATH, ROUTE_PATH, WORKER_STATUS_PATH

__all__ = ["ControlPlane"]

log = logging.getLogger("vespid.control")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MAX_START_BACKOFF_S = 60.0


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(exc: HTTPFacingError) -> web.Response:
    return _json(exc.body(), exc.status_code)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.query.get("api_key")


def _same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


async def _body(request: web.Request) -> Any:
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise RequestInvalid("request body is not valid JSON") from None


class ControlPlane:
    """Endpoints, fleet, router and autoscaler, behind one aiohttp app."""

    def __init__(self, settings: ControlSettings, store: Store, provider: Provider) -> None:
        self.settings = settings
        self.store = store
        self.provider = provider
        self.metrics = ControlMetrics()
        self.fleet = Fleet()
        self.endpoints: dict[str, EndpointConfig] = {}
        self.policy_states: dict[str, PolicyState] = {}
        self.router: Router
        self.history: History
        self.master_token = ""
        self.request_secret = b""  # per-worker HMAC keys are derived from it
        self.admin_key = ""
        self.public_key_pem = b""
        self.ca_pem = b""
        self.url = ""
        self.scaling_log: list[dict[str, Any]] = []
        self._next_worker_id = 1
        self._loops: list[asyncio.Task[None]] = []  # the autoscaler and the history
        self._busy: set[asyncio.Task[None]] = set()
        self._starting: dict[str, int] = {}
        self._kick = asyncio.Event()  # set to decide now rather than at the next tick
        self._capacity: dict[str, asyncio.Condition] = {}  # held /route/ calls wait here
        self._failures: dict[str, int] = {}  # workers in a row that died before ready
        self._start_after: dict[str, float] = {}  # monotonic time before which none starts
        self._gpus_promised = 0  # GPUs of starts spawned but not yet asked of the provider
        self._short_of_gpus: dict[str, int] = {}  # endpoint -> starts held back (logged once)

    # -- start-up ------------------------------------------------------------

    async def _meta(self, key: str, make: Callable[[], str]) -> str:
        value = await self.store.get_meta(key)
        if value is None:
            value = make()
            await self.store.set_meta(key, value)
        return value

    async def open(self, url: str) -> None:
        """Load state (creating keys on first start), apply the endpoints file, clean up."""
        self.url = self.settings.public_url or url
        pem = await self._meta(
            "router_key", lambda: private_key_pem(generate_private_key()).decode()
        )
        key = load_private_key(pem.encode())
        self.public_key_pem = public_key_pem(key)
        self.router = Router(
            self.fleet,
            Signer(key, ttl_s=self.settings.signature_ttl_s),
            max_queued=self.settings.max_queued,
        )
        self.history = History(self.endpoints, self.fleet, self.router)
        self.master_token = await self._meta("master_token", lambda: secrets.token_urlsafe(24))
        self.request_secret = (
            await self._meta("request_secret", lambda: secrets.token_urlsafe(32))
        ).encode()
        self.ca_pem = (await self._meta("ca_pem", make_ca_pem)).encode()
        self.admin_key = self.settings.admin_key or await self._meta(
            "admin_key", lambda: secrets.token_urlsafe(24)
        )
        await asyncio.to_thread(self._write_admin_key)
        self.router.next_request_idx = int(await self._meta("next_request_idx", lambda: "1"))
        self._next_worker_id = int(await self._meta("next_worker_id", lambda: "1"))
        for endpoint in await self.store.endpoints():
            self.endpoints[endpoint.name] = endpoint
        if self.settings.endpoints_file is not None:
            for endpoint in await asyncio.to_thread(
                load_endpoints_file, self.settings.endpoints_file
            ):
                self.endpoints[endpoint.name] = endpoint
                await self.store.put_endpoint(endpoint)
        await self.provider.open()
        # Workers a previous run started are not re-adopted: their reports would carry
        # no routing books, so they are stopped and the autoscaler starts fresh ones.
        for worker_id, _, info in await self.store.workers():
            await self.provider.cleanup(info)
            await self.store.delete_worker(worker_id)
        log.info("control plane ready at %s with %d endpoint(s)", self.url, len(self.endpoints))

    def _write_admin_key(self) -> None:
        path = self.settings.state_dir / "admin.key"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.admin_key + "\n")
        path.chmod(0o600)

    async def close(self) -> None:
        for loop_task in self._loops:
            loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop_task
        for task in list(self._busy):
            task.cancel()
        await asyncio.gather(*self._busy, return_exceptions=True)
        await self.provider.close()
        for record in list(self.fleet.workers.values()):
            await self.store.delete_worker(str(record.worker_id))
        await self.store.set_meta("next_request_idx", str(self.router.next_request_idx))
        await self.store.close()

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)
        r = app.router
        r.add_post(ROUTE_PATH, self._wrap(self.handle_route))
        r.add_get(PUBKEY_PATH, self.handle_pubkey)
        r.add_get("/ca.pem", self.handle_ca)
        r.add_post(WORKER_STATUS_PATH, self._wrap(self.handle_worker_status))
        r.add_post(DELETE_REQUESTS_PATH, self._wrap(self.handle_delete_requests))
        r.add_get("/api/v0/endptjobs/", self._wrap(self.handle_endptjobs))
        r.add_get("/api/v0/endptjobs/{name}/", self._wrap(self.handle_endptjob))
        r.add_get("/api/v0/endpoints", self._wrap(self.handle_list))
        r.add_post("/api/v0/endpoints", self._wrap(self.handle_create))
        r.add_get("/api/v0/endpoints/{name}", self._wrap(self.handle_get))
        r.add_put("/api/v0/endpoints/{name}", self._wrap(self.handle_update))
        r.add_delete("/api/v0/endpoints/{name}", self._wrap(self.handle_delete))
        r.add_get("/api/v0/status", self._wrap(self.handle_status))
        r.add_get("/api/v0/history", self._wrap(self.handle_history))
        StatusPage().add_routes(r)
        r.add_get("/metrics", self.handle_metrics)
        return app

    def start_autoscaler(self) -> None:
        """Start the autoscaler loop and the history's sampling."""
        self._loops += [
            asyncio.create_task(self._autoscale_forever()),
            asyncio.create_task(self.history.run()),
        ]

    @staticmethod
    def _wrap(handler: Handler) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except HTTPFacingError as exc:
                return _error(exc)

        return wrapped

    # -- auth ----------------------------------------------------------------

    def _require_admin(self, request: web.Request) -> None:
        if not _same(_bearer(request), self.admin_key):
            raise Unauthorized(
                "admin key required: send 'Authorization: Bearer <key>' "
                f"(it is in {self.settings.state_dir / 'admin.key'})"
            )

    def _endpoint(self, name: Any) -> EndpointConfig:
        if not isinstance(name, str) or name not in self.endpoints:
            raise NotFound(f"no endpoint named {name!r}; see GET /api/v0/endptjobs/")
        return self.endpoints[name]

    # -- routing ---------------------------------------------------------------

    async def handle_route(self, request: web.Request) -> web.Response:
        body = await _body(request)
        if not isinstance(body, dict):
            raise RequestInvalid('send {"endpoint": name, "api_key": key, "cost": n}')
        problems = {}
        if not isinstance(body.get("endpoint"), str):
            problems["endpoint"] = "expected the endpoint's name"
        cost = body.get("cost", 0)
        if not isinstance(cost, int | float) or isinstance(cost, bool) or cost < 0:
            problems["cost"] = "expected a number >= 0"
        request_idx = body.get("request_idx", 0) or 0
        if not isinstance(request_idx, int) or isinstance(request_idx, bool):
            problems["request_idx"] = "expected an integer"
        if problems:
            raise RequestInvalid(
                "invalid route request ("
                + ", ".join(f"{k}: {v}" for k, v in problems.items())
                + ")",
                fields=problems,
            )
        endpoint = self._endpoint(body["endpoint"])
        key = body.get("api_key") or _bearer(request)
        if not _same(key if isinstance(key, str) else None, endpoint.api_key):
            raise Unauthorized(f"wrong API key for endpoint {endpoint.name!r}")
        try:
            answer = self.router.route(endpoint, float(cost), request_idx)
        except HTTPFacingError:
            self.metrics.route_decisions.labels("rejected").inc()
            raise
        if "url" not in answer:
            self._wake()  # a queued request may need a worker started now
            answer = await self._hold_queued(endpoint, float(cost), answer)
        self.metrics.route_decisions.labels("routed" if "url" in answer else "queued").inc()
        return _json(answer)

    async def _hold_queued(
        self, endpoint: EndpointConfig, cost: float, answer: dict[str, Any]
    ) -> dict[str, Any]:
        """Long-poll: hold a queued /route/ call up to ``route_hold_s`` (5 s, under the 10 s
        Vast's client allows the call), answering as soon as a worker can take it, so a cold
        start is not lengthened by the client's poll backoff. Clients see only a slower
        'queued' answer, which the protocol allows."""
        condition = self._capacity.setdefault(endpoint.name, asyncio.Condition())
        try:
            async with asyncio.timeout(self.settings.route_hold_s), condition:
                while "url" not in answer:
                    await condition.wait()
                    if endpoint.name not in self.endpoints:
                        break
                    answer = self.router.route(endpoint, cost, answer["request_idx"])
        except TimeoutError:
            pass
        return answer

    async def handle_pubkey(self, request: web.Request) -> web.Response:
        return web.Response(body=self.public_key_pem, content_type="application/x-pem-file")

    async def handle_ca(self, request: web.Request) -> web.Response:
        return web.Response(body=self.ca_pem, content_type="application/x-pem-file")

    # -- worker reports --------------------------------------------------------

    def _check_token(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise RequestInvalid("report must be a JSON object")
        if not _same(body.get("mtoken") if isinstance(body.get("mtoken"), str) else None,
                     self.master_token):  # fmt: skip
            raise Unauthorized("wrong or missing mtoken")
        return body

    async def handle_worker_status(self, request: web.Request) -> web.Response:
        body = self._check_token(await _body(request))
        if not isinstance(body.get("id"), int):
            raise RequestInvalid(
                "report needs the worker's integer id", fields={"id": "expected an integer"}
            )
        record = self.fleet.ingest(body)
        if record is None:
            raise NotFound(f"worker {body['id']} is not one of this control plane's")
        condition = self._capacity.get(record.handle.endpoint)
        if condition is not None:  # a report may free capacity: wake held /route/ calls
            async with condition:
                condition.notify_all()
        return _json({"ok": True})

    async def handle_delete_requests(self, request: web.Request) -> web.Response:
        body = self._check_token(await _body(request))
        requests = body.get("requests")
        if not isinstance(requests, list):
            raise RequestInvalid("requests must be a list", fields={"requests": "expected a list"})
        for item in requests:
            if isinstance(item, dict):
                outcome = "success" if item.get("success") else "failure"
                self.metrics.requests_finished.labels(outcome).inc()
        return _json({"ok": True})

    # -- console and admin API -----------------------------------------------------

    def _visible(self, request: web.Request) -> list[EndpointConfig]:
        key = _bearer(request)
        if _same(key, self.admin_key):
            return list(self.endpoints.values())
        visible = [e for e in self.endpoints.values() if _same(key, e.api_key)]
        if not visible:
            raise Unauthorized("unknown API key: send 'Authorization: Bearer <endpoint api key>'")
        return visible

    async def handle_endptjobs(self, request: web.Request) -> web.Response:
        return _json({"success": True, "results": [e.public() for e in self._visible(request)]})

    async def handle_endptjob(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        for endpoint in self._visible(request):
            if endpoint.name == name:
                return _json({"success": True, "result": endpoint.public()})
        raise NotFound(f"no endpoint named {name!r}")

    async def handle_list(self, request: web.Request) -> web.Response:
        self._require_admin(request)
        return _json([e.model_dump(mode="json") for e in self.endpoints.values()])

    async def handle_get(self, request: web.Request) -> web.Response:
        self._require_admin(request)
        return _json(self._endpoint(request.match_info["name"]).model_dump(mode="json"))

    def _parse_endpoint(self, body: Any) -> EndpointConfig:
        try:
            return EndpointConfig.model_validate(body)
        except ValidationError as exc:
            fields = {".".join(str(p) for p in e["loc"]) or "body": e["msg"] for e in exc.errors()}
            raise RequestInvalid(
                "invalid endpoint (" + "; ".join(f"{k}: {v}" for k, v in fields.items()) + ")",
                fields=fields,
            ) from None

    async def handle_create(self, request: web.Request) -> web.Response:
        self._require_admin(request)
        endpoint = self._parse_endpoint(await _body(request))
        if endpoint.name in self.endpoints:
            raise RequestInvalid(
                f"endpoint {endpoint.name!r} exists; "
                f"update it with PUT /api/v0/endpoints/{endpoint.name}"
            )
        self.endpoints[endpoint.name] = endpoint
        await self.store.put_endpoint(endpoint)
        return _json(endpoint.model_dump(mode="json"), 201)

    async def handle_update(self, request: web.Request) -> web.Response:
        self._require_admin(request)
        old = self._endpoint(request.match_info["name"])
        body = await _body(request)
        if not isinstance(body, dict):
            raise RequestInvalid("send the fields to change as a JSON object")
        merged = {**old.model_dump(mode="json"), **body, "name": old.name}
        for part in ("scaling", "template"):
            if isinstance(body.get(part), dict):
                merged[part] = {**old.model_dump(mode="json")[part], **body[part]}
        endpoint = self._parse_endpoint(merged)
        self.endpoints[endpoint.name] = endpoint
        await self.store.put_endpoint(endpoint)
        return _json(endpoint.model_dump(mode="json"))

    async def handle_delete(self, request: web.Request) -> web.Response:
        self._require_admin(request)
        endpoint = self._endpoint(request.match_info["name"])
        del self.endpoints[endpoint.name]
        # Its demand books, policy state and queue go with it, so an endpoint created
        # later under the same name starts from nothing.
        self.fleet.books.pop(endpoint.name, None)
        self.policy_states.pop(endpoint.name, None)
        self.router.queues.pop(endpoint.name, None)
        await self.store.delete_endpoint(endpoint.name)
        self._wake()
        return _json({"deleted": endpoint.name})

    async def handle_status(self, request: web.Request) -> web.Response:
        return _json(self.status())

    def status(self) -> dict[str, Any]:
        endpoints = []
        for endpoint in self.endpoints.values():
            queued_load, queued = self.router.queued_load(endpoint.name)
            endpoints.append(
                {
                    "name": endpoint.name,
                    "scaling": endpoint.scaling.model_dump(),
                    "queued": queued,
                    "queued_load": queued_load,
                    "workers": [w.describe() for w in self.fleet.of(endpoint.name)],
                }
            )
        return {
            "time": time.time(),
            "endpoints": endpoints,
            "route_decisions": dict(self.router.decisions),
            "scaling_log": self.scaling_log[-50:],
        }

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
        return _json(self.history.to_json(since, names))

    async def handle_metrics(self, request: web.Request) -> web.Response:
        self.metrics.refresh(self)
        return web.Response(body=self.metrics.render(), content_type="text/plain")

    # -- the autoscaler loop -------------------------------------------------------

    def _wake(self) -> None:
        self._kick.set()

    async def _autoscale_forever(self) -> None:
        while True:
            try:
                await self.autoscale_once()
            except Exception:  # the loop must outlive any one bad decision
                log.exception("autoscaler step failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.scale_interval_s):
                    await self._kick.wait()
            self._kick.clear()

    async def autoscale_once(self) -> None:
        """One step: retire broken workers, then snapshot -> decide -> act, per endpoint."""
        self.fleet.mark_stale()
        self.router.drop_abandoned()
        now = time.time()
        for record in list(self.fleet.workers.values()):
            endpoint = self.endpoints.get(record.handle.endpoint)
            if endpoint is None:
                self._spawn_stop(record.worker_id, "endpoint deleted")
                continue
            if record.phase is not WorkerPhase.ERRORED:
                if self.provider.state(record.handle) is RunState.EXITED:
                    record.phase, record.error_msg = WorkerPhase.ERRORED, "process exited"
                elif (
                    record.phase is WorkerPhase.STARTING
                    and now - record.handle.started_at > endpoint.template.ready_timeout
                ):
                    record.phase = WorkerPhase.ERRORED
                    record.error_msg = f"not ready within {endpoint.template.ready_timeout:g} s"
        for endpoint in list(self.endpoints.values()):
            queued_load, queued = self.router.queued_load(endpoint.name)
            snapshot = self.fleet.snapshot(
                endpoint, queued_load=queued_load, queued_requests=queued
            )
            state = self.policy_states.get(endpoint.name, PolicyState())
            decision, self.policy_states[endpoint.name] = decide(snapshot, state)
            for worker_id in decision.stop:
                self._spawn_stop(int(worker_id), decision.reason)
            starting = self._starting.get(endpoint.name, 0)
            wanted = max(0, decision.start - starting)
            if wanted and time.monotonic() < self._start_after.get(endpoint.name, 0.0):
                continue  # backing off: its last workers failed before they were ready
            wanted = self._fit_gpus(endpoint, wanted)
            for _ in range(wanted):
                self._spawn_start(endpoint, decision.reason)

    def _fit_gpus(self, endpoint: EndpointConfig, wanted: int) -> int:
        """``wanted`` cut to the workers the provider's free GPUs can take; a shortfall is
        logged when it changes rather than at every tick."""
        per_worker = endpoint.template.gpus_per_worker
        free = self.provider.free_gpus()
        if not wanted or not per_worker or free is None:
            self._short_of_gpus.pop(endpoint.name, None)
            return wanted
        fits = max(0, free - self._gpus_promised) // per_worker
        short = max(0, wanted - fits)
        if short and self._short_of_gpus.get(endpoint.name) != short:
            log.warning(
                "%s wants %d more worker(s) but the free GPUs fit %d (gpus_per_worker=%d); "
                "the rest start when GPUs free up",
                endpoint.name, wanted, fits, per_worker,
            )  # fmt: skip
        if short:
            self._short_of_gpus[endpoint.name] = short
        else:
            self._short_of_gpus.pop(endpoint.name, None)
        return min(wanted, fits)

    def _note_outcome(self, record: WorkerRecord) -> None:
        """Back off starting workers for an endpoint whose workers die before they are ready
        (a model that cannot load): 1 s after the first failure, doubling up to 60 s; a
        worker that becomes ready clears it."""
        name = record.handle.endpoint
        if record.ready_after_s is not None:
            self._failures.pop(name, None)
            self._start_after.pop(name, None)
            return
        failures = self._failures.get(name, 0) + 1
        self._failures[name] = failures
        delay_s = min(2.0 ** (failures - 1), MAX_START_BACKOFF_S)
        self._start_after[name] = time.monotonic() + delay_s
        log.warning(
            "worker %d of %s failed before it was ready (%s); next start in %.0f s",
            record.worker_id, name, record.error_msg or "stopped", delay_s,
        )  # fmt: skip

    def _log_action(
        self, endpoint: str, action: str, worker_id: int, reason: str, took_s: float
    ) -> None:
        self.metrics.scaling_actions.labels(endpoint, action).inc()
        self.scaling_log.append(
            {"time": time.time(), "endpoint": endpoint, "action": action,
             "worker_id": worker_id, "reason": reason, "provider_s": round(took_s, 4)}
        )  # fmt: skip
        del self.scaling_log[:-200]
        self.history.note_action(endpoint, action)
        log.info("%s worker %d of %s: %s", action, worker_id, endpoint, reason)

    def _track(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._busy.add(task)
        task.add_done_callback(self._busy.discard)

    def _spawn_start(self, endpoint: EndpointConfig, reason: str) -> None:
        worker_id = self._next_worker_id
        self._next_worker_id += 1
        self._starting[endpoint.name] = self._starting.get(endpoint.name, 0) + 1
        promised = endpoint.template.gpus_per_worker if self.provider.free_gpus() is not None else 0
        self._gpus_promised += promised

        async def start() -> None:
            handed = False
            try:
                await self.store.set_meta("next_worker_id", str(self._next_worker_id))
                began = time.monotonic()
                key = None
                if self.settings.request_signing == "hmac":
                    key = worker_request_key(self.request_secret, worker_id)
                # The provider takes its GPUs as this call begins: no longer a promise.
                self._gpus_promised -= promised
                handed = True
                handle = await self.provider.start(
                    WorkerOrder(
                        worker_id,
                        endpoint,
                        report_addr=self.url,
                        master_token=self.master_token,
                        request_key=encode_request_key(key) if key else "",
                    )
                )
                took_s = time.monotonic() - began
                self.metrics.provider_seconds.labels("start").observe(took_s)
                self.fleet.add(handle).request_key = key
                self._log_action(endpoint.name, "start", worker_id, reason, took_s)
                await self.store.put_worker(str(worker_id), endpoint.name, handle.info)
            except Exception:
                log.exception("starting a worker for %s failed", endpoint.name)
            finally:
                if not handed:
                    self._gpus_promised -= promised
                self._starting[endpoint.name] -= 1

        self._track(start())

    def _spawn_stop(self, worker_id: int, reason: str) -> None:
        record = self.fleet.remove(worker_id)
        if record is None:
            return
        if record.phase is WorkerPhase.ERRORED:
            self._note_outcome(record)

        async def stop() -> None:
            began = time.monotonic()
            await self.provider.stop(record.handle)
            took_s = time.monotonic() - began
            self.metrics.provider_seconds.labels("stop").observe(took_s)
            await self.store.delete_worker(str(worker_id))
            self._log_action(record.handle.endpoint, "stop", worker_id, reason, took_s)

        self._track(stop())
