"""Send N requests to an endpoint at a fixed rate or concurrency, and keep every outcome.

``RequestRun(plan, payloads).execute(client)`` looks the endpoint up, then sends
``plan.requests`` requests through the client (routing, queueing and re-routing
as any client call): with ``rps``, request ``i`` starts at ``plan.start_s(i)``, ``i /
rps`` seconds or a replay's own time (open loop; ``concurrency``, if also given, caps
how many are in flight); with
``concurrency`` alone, that many lanes each send the next request as soon as
their last one ends (closed loop). Each request is read to its end as a stream,
so its time to first byte is the first chunk's arrival, and its latency the
last one's; both start when the request is handed to the client and so include
routing and any wait in the router's queue.

Every run is bounded in count (``requests``) and time (``max_time_s``): past
``max_time_s``, or once ``stop`` is set, no request starts and those in flight
are cancelled; the report counts them as ``cancelled`` and the rest as not
sent. Workers are sampled from the control plane meanwhile (``workers.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from vespid.client.client import Client
from vespid.client.endpoint import Endpoint
from vespid.client.errors import ClientError, ControlPlaneError, RequestTimeout
from vespid.loadtest.payloads import PayloadSource
from vespid.loadtest.plan import LoadPlan, check_positive
from vespid.loadtest.stats import percentile
from vespid.loadtest.workers import WorkerSampler

__all__ = [
    "LoadPlan",
    "Progress",
    "RequestRecord",
    "RequestRun",
    "Run",
    "check_positive",
    "find_endpoint",
]

# Requests whose latency the live display's p50 is taken over.
RECENT: Final = 100
# Seconds over which the live display's rate is taken.
RATE_WINDOW_S: Final = 10.0


async def find_endpoint(client: Client, name: str) -> Endpoint:
    """The endpoint from the listing; if the listing refuses the key, the key is
    taken to be the endpoint's own and the router checks it."""
    try:
        return await client.get_endpoint(name)
    except ControlPlaneError as exc:
        if exc.status not in (401, 403):
            raise
    return client.endpoint(name)


@dataclass(slots=True)
class RequestRecord:
    """One request's outcome; times in seconds, ``started_s`` from the run's start."""

    index: int
    path: str
    cost: float
    started_s: float
    outcome: str = "pending"  # "ok", "cancelled", or a client error code ("timeout", ...)
    status: int | None = None
    latency_s: float | None = None
    ttfb_s: float | None = None
    bytes: int = 0
    attempts: int | None = None
    worker: str | None = None
    error: str | None = None

    @property
    def key(self) -> str:
        """What the report counts it under: the HTTP status for an answer (``200``,
        ``503``), else what went wrong (``timeout``, ``route_refused 429``)."""
        if self.outcome in ("ok", "worker_error") and self.status is not None:
            return str(self.status)
        return self.outcome if self.status is None else f"{self.outcome} {self.status}"

    def to_json(self) -> dict[str, Any]:
        def r(value: float | None) -> float | None:
            return None if value is None else round(value, 4)

        return {
            "index": self.index,
            "path": self.path,
            "cost": self.cost,
            "started_s": r(self.started_s),
            "outcome": self.outcome,
            "status": self.status,
            "latency_s": r(self.latency_s),
            "ttfb_s": r(self.ttfb_s),
            "bytes": self.bytes,
            "attempts": self.attempts,
            "worker": self.worker,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class Progress:
    """One line of the live display: ``done`` of ``total``, and what else to say."""

    elapsed_s: float
    done: int
    total: int
    text: str


class Run:
    """What both kinds of run share: the clock, the workers sampler, the bounds.

    A subclass implements ``_drive(endpoint)``; ``execute`` runs it within
    ``max_time_s`` and until ``stop`` is set, whichever comes first.
    """

    endpoint_name: str
    max_time_s: float
    sample_interval_s: float

    def __init__(self) -> None:
        self.started_at: float | None = None
        """Unix time the run started."""
        self.elapsed_s = 0.0
        self.stopped: str | None = None
        """Why the run ended early: ``max_time`` or ``interrupted``; None if it did not."""
        self.finished = False
        self.sampler: WorkerSampler | None = None
        self._t0: float | None = None

    def now_s(self) -> float:
        """Seconds since the run started (0 before)."""
        if self._t0 is None:
            return 0.0
        return asyncio.get_running_loop().time() - self._t0

    async def _sleep_until(self, t_s: float) -> None:
        delay = t_s - self.now_s()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _drive(self, endpoint: Endpoint) -> None:
        raise NotImplementedError

    async def execute(
        self,
        client: Client,
        *,
        stop: asyncio.Event | None = None,
        sample_workers: bool = True,
        endpoint: Endpoint | None = None,
    ) -> None:
        """Run to the end, to ``max_time_s``, or until ``stop`` is set; ``endpoint``
        if already looked up, else it is looked up first."""
        if endpoint is None:
            endpoint = await find_endpoint(client, self.endpoint_name)
        self._t0 = asyncio.get_running_loop().time()
        self.started_at = time.time()
        stop = stop or asyncio.Event()
        sampler_stop = asyncio.Event()
        sampling: asyncio.Task[None] | None = None
        # The sampler has its own connections: a pool full of requests must not delay it.
        http = (
            aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) if sample_workers else None
        )
        if http is not None:
            self.sampler = WorkerSampler(
                http,
                client.console_url,
                endpoint.name,
                clock=self.now_s,
                interval_s=self.sample_interval_s,
            )
            sampling = asyncio.create_task(self.sampler.run(sampler_stop))
        main = asyncio.create_task(self._drive(endpoint))
        waiter = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait(
                {main, waiter}, timeout=self.max_time_s, return_when=asyncio.FIRST_COMPLETED
            )
            if main not in done:
                self.stopped = "interrupted" if stop.is_set() else "max_time"
                main.cancel()
            await asyncio.wait({main})
            if not main.cancelled():
                main.result()  # a bug in the driver surfaces here
        finally:
            for task in (main, waiter):
                task.cancel()
            await asyncio.wait({main, waiter})
            self.elapsed_s = self.now_s()
            sampler_stop.set()
            if sampling is not None:
                await sampling
            if http is not None:
                await http.close()
            self.finished = True

    def _workers_text(self) -> str:
        sample = self.sampler.latest if self.sampler is not None else None
        if sample is None:
            return ""
        return f", workers {sample.ready} ready / {sample.total}"


class RequestRun(Run):
    """One load test of ``plan.requests`` requests; ``records`` fill in as they go."""

    def __init__(self, plan: LoadPlan, payloads: PayloadSource) -> None:
        super().__init__()
        self.plan = plan
        self.payloads = payloads
        self.endpoint_name = plan.endpoint
        self.max_time_s = plan.max_time_s
        self.sample_interval_s = plan.sample_interval_s
        self.records: list[RequestRecord] = []
        self.in_flight = 0
        self.done = 0
        self.ok = 0
        self._ended: deque[tuple[float, float]] = deque(maxlen=RECENT)  # (end, latency) if ok

    async def _drive(self, endpoint: Endpoint) -> None:
        if self.plan.rps is not None:
            await self._open_loop(endpoint)
        else:
            await self._closed_loop(endpoint)

    async def _open_loop(self, endpoint: Endpoint) -> None:
        cap = asyncio.Semaphore(self.plan.concurrency) if self.plan.concurrency else None
        tasks: set[asyncio.Task[None]] = set()
        done_tasks: list[asyncio.Task[None]] = []

        def release(_: asyncio.Task[None]) -> None:
            if cap is not None:
                cap.release()

        try:
            for index in range(self.plan.requests):
                await self._sleep_until(self.plan.start_s(index))
                if cap is not None:
                    await cap.acquire()
                task = asyncio.create_task(self._one(endpoint, index))
                tasks.add(task)
                done_tasks.append(task)
                task.add_done_callback(tasks.discard)
                task.add_done_callback(release)
            if tasks:
                await asyncio.wait(set(tasks))
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(set(tasks))
        _raise_first(done_tasks)

    async def _closed_loop(self, endpoint: Endpoint) -> None:
        indexes = iter(range(self.plan.requests))

        async def lane() -> None:
            for index in indexes:  # shared: each lane takes the next index
                await self._one(endpoint, index)

        lanes = [asyncio.create_task(lane()) for _ in range(self.plan.lanes)]
        try:
            await asyncio.wait(lanes)
        finally:
            for task in lanes:
                task.cancel()
            await asyncio.wait(lanes)
        _raise_first(lanes)

    async def _one(self, endpoint: Endpoint, index: int) -> None:
        payload = self.payloads(index)
        loop = asyncio.get_running_loop()
        rec = RequestRecord(index, payload.path, payload.cost, started_s=self.now_s())
        self.records.append(rec)
        self.in_flight += 1
        start = loop.time()
        try:
            async with asyncio.timeout(self.plan.timeout_s):  # the body too, not just headers
                resp = await endpoint.request(
                    payload.path,
                    payload.body,
                    cost=payload.cost,
                    stream=True,
                    timeout_s=self.plan.timeout_s,
                )
                rec.status, rec.attempts, rec.worker = resp.status, resp.attempts, resp.worker_url
                async with resp:
                    async for chunk in resp.iter_chunks():
                        if rec.ttfb_s is None:
                            rec.ttfb_s = loop.time() - start
                        rec.bytes += len(chunk)
            rec.latency_s = loop.time() - start
            if rec.ttfb_s is None:  # an empty body: its first byte is its end
                rec.ttfb_s = rec.latency_s
            rec.outcome = "ok"
            self._ended.append((self.now_s(), rec.latency_s))
        except asyncio.CancelledError:
            rec.outcome = "cancelled"
            raise
        except (TimeoutError, RequestTimeout):
            rec.outcome, rec.status = "timeout", None
            rec.error = f"no complete answer within {self.plan.timeout_s:g} s"
        except ClientError as exc:
            rec.outcome = exc.code
            status = exc.fields.get("status")
            rec.status = status if isinstance(status, int) else None
            attempts = exc.fields.get("attempts")
            rec.attempts = attempts if isinstance(attempts, int) else rec.attempts
            rec.error = exc.message[:500]
        except Exception as exc:  # one odd failure is a result to report, not a crash
            rec.outcome, rec.status = "exception", None
            rec.error = f"{type(exc).__name__}: {exc}"[:500]
        finally:
            if rec.latency_s is None and rec.outcome != "cancelled":
                rec.latency_s = loop.time() - start
            self.in_flight -= 1
            self.done += 1
            self.ok += rec.outcome == "ok"

    def progress(self) -> Progress:
        """The live display's line."""
        now = self.now_s()
        done, ok = self.done, self.ok
        failed = done - ok
        latencies = sorted(lat for _, lat in self._ended)
        p50 = f", p50 {percentile(latencies, 50):.2f} s" if latencies else ""
        window = min(RATE_WINDOW_S, now)
        recent = sum(end >= now - window for end, _ in self._ended)
        rate = f", {recent / window:.1f} req/s" if window > 0 else ""
        text = f"ok {ok}, failed {failed}, in flight {self.in_flight}{p50}{rate}"
        return Progress(now, done, self.plan.requests, text + self._workers_text())


def _raise_first(tasks: list[asyncio.Task[None]]) -> None:
    """Re-raise what broke a request task outside the request itself (e.g. the payload
    source), so a run that could not send reports why instead of "0 sent"."""
    errors = [t.exception() for t in tasks if t.done() and not t.cancelled()]
    first = next((e for e in errors if e is not None), None)  # every one read: none left unread
    if first is not None:
        raise first
