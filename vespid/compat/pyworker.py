"""Run a PyWorker-style worker module (``ApiPayload``, ``EndpointHandler``, ``Backend``) on vespid.

A module written like PyWorker's hello_world runs with only its imports changed::

    from vespid.compat.pyworker import (
        ApiPayload, Backend, EndpointHandler, JsonDataException, LogAction, start_server,
    )

How its pieces map onto vespid:

- ``ApiPayload.from_json_msg`` is the handler's parser: a ``JsonDataException`` it raises
  (or a ``ValueError``/``TypeError``/``KeyError``) is a 422 JSON answer naming the fields.
- ``ApiPayload.count_workload`` is the request's workload (admission, reports, metrics).
- ``EndpointHandler.endpoint`` and ``generate_payload_json`` say what the model server
  gets; ``generate_client_response`` shapes the client's answer, streaming included.
- ``backend.create_handler(h)`` in a route makes that route a vespid handler; other routes
  (``/ping``, ``/healthcheck``) are served as they are, with no signature check.
- ``Backend(model_server_url, model_log_file, allow_parallel_requests, benchmark_handler,
  log_actions)`` become ``BACKEND_URL``, ``MODEL_LOG``, ``ALLOW_PARALLEL``, the benchmark
  (the handler's ``make_benchmark_payload`` through vespid's concurrency ramp, workload from
  ``count_workload``) and ``VESPID_LOG_LOADED``/``_ERROR``/``_INFO``.
- ``start_server(backend, routes)`` runs a vespid worker with every other setting read
  from the environment as ``vespid worker`` reads it (``WORKER_PORT``, ``REPORT_ADDR``,
  ``UNSECURED``, ...).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import os
import random
import signal
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar

import aiohttp
from aiohttp import web

from vespid.benchmarks.ramp import Ramp, ramp
from vespid.errors import BackendError, ConfigError, PayloadInvalid
from vespid.handlers.base import BackendCall, Handler
from vespid.protocol.wire import dumps
from vespid.types import BenchmarkFunction
from vespid.worker.settings import WorkerSettings, load_worker_settings

__all__ = [
    "ApiPayload",
    "Backend",
    "EndpointHandler",
    "JsonDataException",
    "LogAction",
    "WorkerParts",
    "endpoint_benchmark",
    "start_server",
    "worker_parts",
    "worker_settings",
]


class JsonDataException(PayloadInvalid):
    """A payload's parser refused it; ``message`` maps each field to its problem."""

    def __init__(self, json_msg: Mapping[str, Any]) -> None:
        fields = {str(k): str(v) for k, v in json_msg.items()}
        problems = ", ".join(f"{k}: {v}" for k, v in fields.items()) or "invalid"
        super().__init__(f"invalid payload ({problems})", fields=fields)
        self.json_msg = dict(json_msg)


class ApiPayload(ABC):
    """A model API's request payload."""

    @classmethod
    @abstractmethod
    def for_test(cls) -> ApiPayload:
        """A payload for benchmarking and load tests."""

    @abstractmethod
    def generate_payload_json(self) -> dict[str, Any]:
        """The JSON sent to the model server."""

    @abstractmethod
    def count_workload(self) -> float:
        """The request's workload."""

    @classmethod
    @abstractmethod
    def from_json_msg(cls, json_msg: dict[str, Any]) -> ApiPayload:
        """Parse the request's payload; raise JsonDataException for a bad one."""


P = TypeVar("P", bound=ApiPayload)


@dataclasses.dataclass
class EndpointHandler(ABC, Generic[P]):
    """One model API endpoint: which payload, where it goes, how the answer looks."""

    benchmark_runs: int = 8
    benchmark_words: int = 100

    @property
    @abstractmethod
    def endpoint(self) -> str:
        """The model server's path."""

    @classmethod
    @abstractmethod
    def payload_cls(cls) -> type[P]:
        """The ApiPayload subclass this endpoint takes."""

    def generate_payload_json(self, payload: P) -> dict[str, Any]:
        """The JSON sent to the model server; by default the payload's own."""
        return payload.generate_payload_json()

    @abstractmethod
    def make_benchmark_payload(self) -> P:
        """A payload for the benchmark."""

    @abstractmethod
    async def generate_client_response(
        self, client_request: web.Request, model_response: aiohttp.ClientResponse
    ) -> web.Response | web.StreamResponse:
        """The client's answer, made from the model server's."""


class LogAction(enum.Enum):
    """What a model log line containing a given text means."""

    ModelLoaded = "loaded"  # the model is loaded: benchmark, then serve
    ModelError = "error"  # the model failed: the worker is errored
    Info = "info"  # worth logging


class _EndpointRoute(Handler[ApiPayload]):
    """An EndpointHandler as a vespid handler for one route."""

    def __init__(self, handler: EndpointHandler[Any]) -> None:
        self.handler = handler

    def parse(self, payload: Any) -> ApiPayload:
        if not isinstance(payload, dict):
            raise JsonDataException({"payload": "expected a JSON object"})
        value: ApiPayload = self.handler.payload_cls().from_json_msg(payload)
        return value

    def workload(self, value: ApiPayload, cost: float) -> float:
        return float(value.count_workload())

    def backend_call(self, value: ApiPayload, path_qs: str) -> BackendCall:
        return BackendCall(self.handler.endpoint, dumps(self.handler.generate_payload_json(value)))

    async def respond(
        self, request: web.Request, backend: aiohttp.ClientResponse, value: ApiPayload
    ) -> web.StreamResponse:
        return await self.handler.generate_client_response(request, backend)

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        raise RuntimeError("routes made by Backend.create_handler are served by start_server")


@dataclasses.dataclass
class Backend:
    """The model server a worker stands in front of, as PyWorker describes it."""

    model_server_url: str
    model_log_file: str | None = None
    allow_parallel_requests: bool = True
    benchmark_handler: EndpointHandler[Any] | None = None
    log_actions: list[tuple[LogAction, str]] = dataclasses.field(default_factory=list)
    _session: aiohttp.ClientSession | None = dataclasses.field(default=None, repr=False)

    @property
    def session(self) -> aiohttp.ClientSession:
        """An HTTP client whose relative URLs go to the model server (for extra routes)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(base_url=self.model_server_url.rstrip("/"))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def create_handler(self, handler: EndpointHandler[Any]) -> _EndpointRoute:
        """A route handler for ``web.post(path, ...)``; start_server serves it."""
        return _EndpointRoute(handler)

    def settings_overrides(self) -> dict[str, Any]:
        """The vespid settings this Backend stands for."""
        texts = {action: [t for a, t in self.log_actions if a is action] for action in LogAction}
        overrides: dict[str, Any] = {
            "backend_url": self.model_server_url,
            "allow_parallel": self.allow_parallel_requests,
        }
        if self.model_log_file:
            overrides.update(
                model_log=self.model_log_file,
                log_loaded=texts[LogAction.ModelLoaded],
                log_error=texts[LogAction.ModelError],
                log_info=texts[LogAction.Info],
            )
        if self.benchmark_handler is not None:
            cls = type(self.benchmark_handler)
            overrides["benchmark"] = f"{cls.__module__}:{cls.__name__}"  # keys the cache
        return overrides


def endpoint_benchmark(handler: EndpointHandler[Any]) -> BenchmarkFunction:
    """A vespid benchmark from an EndpointHandler: its benchmark payloads sent to its endpoint
    through the concurrency ramp, each counting ``count_workload()``."""

    async def benchmark(backend_url: str, session: aiohttp.ClientSession) -> float:
        url = backend_url + handler.endpoint

        async def one(rng: random.Random) -> float:
            payload = handler.make_benchmark_payload()
            async with session.post(url, json=handler.generate_payload_json(payload)) as resp:
                body = await resp.read()
                if resp.status != 200:
                    text = body[:300].decode(errors="replace")
                    raise BackendError(f"benchmark: POST {url} answered {resp.status}: {text}")
            return float(payload.count_workload())

        runs = max(1, handler.benchmark_runs)
        settings = Ramp(min_requests=runs, requests_per_slot=runs)
        return await ramp(one, name=type(handler).__name__, settings=settings)

    return benchmark


def worker_settings(backend: Backend, environ: Mapping[str, str]) -> WorkerSettings:
    """The worker's settings: the Backend's, then everything else from ``environ``."""
    return load_worker_settings(environ, backend.settings_overrides())


@dataclasses.dataclass(frozen=True)
class WorkerParts:
    """What a PyWorker-style backend and its routes add to a vespid worker."""

    handlers: list[Handler[Any]]
    routes: list[web.RouteDef]  # plain routes, served as they are
    benchmark: BenchmarkFunction | None


def worker_parts(backend: Backend, routes: Sequence[web.RouteDef]) -> WorkerParts:
    """The handlers, plain routes and benchmark for a PyWorker-style backend and routes
    (``vespid.worker.serve.running_worker`` takes them as keywords)."""
    handlers: list[Handler[Any]] = []
    plain: list[web.RouteDef] = []
    for route in routes:
        if isinstance(route.handler, _EndpointRoute):
            handler = _EndpointRoute(route.handler.handler)
            handler.path, handler.method = route.path, route.method
            handlers.append(handler)
        else:
            plain.append(route)
    bench = endpoint_benchmark(backend.benchmark_handler) if backend.benchmark_handler else None
    return WorkerParts(handlers, plain, bench)


def start_server(backend: Backend, routes: Sequence[web.RouteDef], **_: Any) -> None:
    """Serve the worker until SIGINT or SIGTERM (what PyWorker's start_server does)."""
    from vespid.logs import setup_logging
    from vespid.runtime import run_async
    from vespid.worker.serve import serve

    try:
        settings = worker_settings(backend, os.environ)
    except ConfigError as exc:
        print(f"worker: {exc}", file=sys.stderr)
        sys.exit(2)
    setup_logging(settings.log_level)

    async def main() -> None:
        parts = worker_parts(backend, routes)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await serve(
                settings,
                stop=stop,
                handlers=parts.handlers,
                routes=parts.routes,
                benchmark=parts.benchmark,
            )
        finally:
            await backend.close()

    run_async(main)
