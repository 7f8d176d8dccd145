"""The worker's lifecycle: wait for the backend, benchmark, serve, keep checking health.

Readiness is noticed within ``VESPID_READY_POLL_S`` (0.1 s by default) of the backend
being up: the worker polls ``HEALTHCHECK_ENDPOINT`` until it answers 200, or, in the
older mode, tails ``MODEL_LOG`` for a "loaded" string; with neither, any HTTP answer
from the backend's root means up. In every mode the benchmark starts only once the
backend answers HTTP. Once ready, health is polled every ``VESPID_HEALTH_INTERVAL_S``:
a failure marks the worker errored, and a later success makes it ready again.

Parked (``POST /vespid/park``, ``vespid.worker.parking``): the worker takes no new
request (each gets a 503 saying it is parked, at once) and its health is not polled,
so a sleeping backend never reads as an error; the benchmark figure is kept, so a
woken worker is ready as soon as its backend's health check passes again.

While it waits, the worker says what for (the URL it polls and what it last got, or
the model log's text it waits for, or the benchmark it runs) with how long so far: in
the log, first after ``WAIT_LOG_FIRST_S`` and then every ``WAIT_LOG_EVERY_S``, and in
the 503 a request gets meanwhile.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import aiohttp

from vespid.errors import BackendError, NotReady
from vespid.types import BenchmarkFunction
from vespid.worker.benchmark import BenchmarkCache, benchmark_spec, describe_age, run_benchmark
from vespid.worker.metrics import WorkerMetrics
from vespid.worker.served_model import served_models
from vespid.worker.settings import WorkerSettings

__all__ = ["Lifecycle", "WorkerState", "tail_lines"]

log = logging.getLogger("vespid.worker")

WAIT_LOG_FIRST_S: Final = 5.0  # the first "still waiting" line comes after this long
WAIT_LOG_EVERY_S: Final = 30.0  # and the next ones this far apart


class WorkerState(enum.Enum):
    LOADING = "loading"  # waiting for the model server to come up
    BENCHMARKING = "benchmarking"  # measuring throughput
    READY = "ready"  # serving requests
    ERRORED = "errored"  # the model server is broken; error_msg says why
    PARKED = "parked"  # asleep on the control plane's word: takes no work, not health-checked


async def tail_lines(path: Path, poll_s: float) -> AsyncIterator[str]:
    """Yield lines appended to ``path`` from its start, following rotation.

    A new inode or a file shorter than what was read means the log was rotated or
    truncated; reading restarts at the new file's beginning. Reads run in a thread.
    """
    inode: int | None = None
    pos = 0
    partial = b""

    def read_new() -> tuple[int | None, bytes]:
        nonlocal pos
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below, after fstat and read
        except FileNotFoundError:
            return None, b""
        with f:  # fstat, not stat: the inode must be the one of the file that is read
            st = os.fstat(f.fileno())
            start = 0 if st.st_ino != inode or st.st_size < pos else pos
            f.seek(start)
            data = f.read(1 << 20)
        pos = start + len(data)
        return st.st_ino, data

    while True:
        new_inode, data = await asyncio.to_thread(read_new)
        if new_inode is not None and new_inode != inode:
            partial = b""
            inode = new_inode
        if data:
            *lines, partial = (partial + data).split(b"\n")
            for line in lines:
                yield line.decode(errors="replace")
        else:
            await asyncio.sleep(poll_s)


class Lifecycle:
    """State machine from start-up to ready, and the health watch after it."""

    def __init__(
        self,
        settings: WorkerSettings,
        session: aiohttp.ClientSession,
        metrics: WorkerMetrics,
        benchmark: BenchmarkFunction,
    ) -> None:
        self.settings = settings
        self._session = session
        self._metrics = metrics
        self.state = WorkerState.LOADING
        self.error_msg = ""
        self.max_perf: float | None = None
        self.loadtime_s: float | None = None
        self.started_at = time.monotonic()
        self.waiting_for = f"the backend at {settings.backend_url}"  # kept true by run()
        self._ready = asyncio.Event()
        self._log_loaded = asyncio.Event()
        self.on_change: list[asyncio.Event] = []
        self._benchmark = benchmark
        self._spec = benchmark_spec(settings.benchmark, settings.backend)

    # -- state -------------------------------------------------------------

    def _set(self, state: WorkerState, error_msg: str = "") -> None:
        if state is self.state and error_msg == self.error_msg:
            return
        if state is WorkerState.ERRORED:
            log.error("worker errored: %s", error_msg)
        else:
            log.info("worker %s", state.value)
        self.state = state
        self.error_msg = error_msg
        self._metrics.ready.set(1 if state is WorkerState.READY else 0)
        self._metrics.errored.set(1 if state is WorkerState.ERRORED else 0)
        if state is WorkerState.READY:
            self._ready.set()
        else:
            self._ready.clear()
        for event in self.on_change:
            event.set()

    async def wait_ready(self) -> None:
        """Return once ready; NotReady (503) when errored or still loading after the wait."""
        if self.state is WorkerState.READY:
            return
        if self.state is WorkerState.ERRORED:
            raise NotReady(f"worker is errored: {self.error_msg}")
        if self.state is WorkerState.PARKED:
            raise NotReady(
                "worker is parked: it takes no requests until the control plane wakes it; "
                "send this request to another worker",
                state=self.state.value,
            )
        try:
            async with asyncio.timeout(self.settings.ready_wait_s):
                await self._ready.wait()
        except TimeoutError:
            raise NotReady(
                f"worker is still {self.state.value}: {self.describe_wait()}; "
                "retry in a few seconds",
                state=self.state.value,
            ) from None

    def describe_wait(self) -> str:
        """What the worker waits for, and how long so far: "waiting for <what> (12 s so far)"."""
        return f"waiting for {self.waiting_for} ({time.monotonic() - self.started_at:.0f} s so far)"

    # -- probes ------------------------------------------------------------

    async def _probe(self, url: str, *, need_200: bool) -> str | None:
        """None when the probe passes, else why it failed."""
        timeout = aiohttp.ClientTimeout(total=max(2.0, self.settings.ready_poll_s * 20))
        try:
            async with self._session.get(url, timeout=timeout) as resp:
                await resp.read()
                if need_200 and resp.status != 200:
                    return f"{url} answered {resp.status}"
                return None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, ConnectionRefusedError):
                return f"{url}: connection refused"
            return f"{url} unreachable: {exc}"
        except TimeoutError:
            return f"{url}: no answer within {timeout.total:g} s"
        except aiohttp.ClientError as exc:
            return f"{url} unreachable: {str(exc) or type(exc).__name__}"

    async def _health(self) -> str | None:
        s = self.settings
        if s.backend == "null":
            if s.backend_health_url is None:
                return None  # the stub /health on the control port always passes
            return await self._probe(s.backend_health_url, need_200=True)
        endpoint = s.healthcheck_endpoint
        return await self._probe(s.backend_url + (endpoint or "/"), need_200=endpoint is not None)

    async def _watch_log(self, path: Path) -> None:
        s = self.settings
        async for line in tail_lines(path, s.ready_poll_s):
            if any(text in line for text in s.log_error):
                self._set(WorkerState.ERRORED, f"model log: {line.strip()[:500]}")
            elif any(text in line for text in s.log_loaded):
                log.info("model log says loaded: %s", line.strip()[:200])
                self._log_loaded.set()
                if self.state is WorkerState.ERRORED:
                    self._set(WorkerState.LOADING)
            elif any(text in line for text in s.log_info):
                log.info("model: %s", line.strip()[:500])

    # -- the run -----------------------------------------------------------

    async def run(self) -> None:
        """Drive the worker from loading to ready, then watch health; runs until cancelled."""
        watcher = None
        if self.settings.model_log is not None:
            watcher = asyncio.create_task(self._watch_log(self.settings.model_log))
        narrator = asyncio.create_task(self._narrate_wait())
        try:
            await self._wait_up()
            await self._measure()
            narrator.cancel()
            self.loadtime_s = time.monotonic() - self.started_at
            self._set(WorkerState.READY)
            log.info("ready in %.2f s, max_perf %.1f workload/s", self.loadtime_s, self.max_perf)
            await self._watch_health()
        finally:
            narrator.cancel()
            if watcher is not None:
                watcher.cancel()

    async def _narrate_wait(self) -> None:
        """Until cancelled (once ready): one line on what the worker waits for, first
        after WAIT_LOG_FIRST_S, then every WAIT_LOG_EVERY_S."""
        await asyncio.sleep(WAIT_LOG_FIRST_S)
        while True:
            log.info("worker still %s: %s", self.state.value, self.describe_wait())
            await asyncio.sleep(WAIT_LOG_EVERY_S)

    async def _wait_up(self) -> None:
        s = self.settings
        if s.model_log is not None:
            loaded = " or ".join(repr(text) for text in s.log_loaded)
            self.waiting_for = f"MODEL_LOG {s.model_log} to say {loaded}"
            await self._log_loaded.wait()
        while True:
            if self.state is not WorkerState.ERRORED:
                problem = await self._health()
                if problem is None:
                    return
                self.waiting_for = problem
            await asyncio.sleep(s.ready_poll_s)

    async def _measure(self) -> None:
        s = self.settings
        if s.max_perf is not None:
            self.max_perf = s.max_perf
        else:
            cache = await self._open_cache()
            self.max_perf = await self._from_cache(cache) or await self._benchmark_into(cache)
        self._metrics.max_perf.set(self.max_perf)

    async def _benchmark_into(self, cache: BenchmarkCache) -> float:
        """Run the benchmark until it gives a figure (errored meanwhile); cache it."""
        s = self.settings
        self.waiting_for = f"the benchmark {self._spec} against {s.backend_url}"
        while True:
            self._set(WorkerState.BENCHMARKING)
            try:
                max_perf = await run_benchmark(self._benchmark, s.backend_url, self._session)
            except BackendError as exc:
                self._set(WorkerState.ERRORED, str(exc))
                await asyncio.sleep(max(s.health_interval_s, 1.0))
                continue
            log.info("Benchmark complete: %.1f workload/s", max_perf)
            await cache.put(max_perf)
            return max_perf

    async def _open_cache(self) -> BenchmarkCache:
        """The cache entry for this benchmark, model and server (asks the server its model)."""
        s = self.settings
        served = [] if s.backend == "null" else await served_models(self._session, s.backend_url)
        return BenchmarkCache(
            s.cache_dir,
            benchmark=self._spec,
            model=s.model_name,
            served=served,
            server=s.benchmark_key or s.backend_url,
        )

    async def _from_cache(self, cache: BenchmarkCache) -> float | None:
        """The cached figure, said so in the log; None to measure (VESPID_REBENCHMARK)."""
        if self.settings.rebenchmark:
            log.info("VESPID_REBENCHMARK: measuring again for %s", cache.describe())
            return None
        hit = await cache.get()
        if hit is None:
            return None
        log.info(
            "benchmark result from cache: %.1f workload/s, measured %s ago for %s (%s); "
            "to measure again, set VESPID_REBENCHMARK=true or pass --rebenchmark",
            hit.max_perf,
            describe_age(hit.age_s),
            cache.describe(),
            cache.path,
        )
        return hit.max_perf

    @property
    def parked(self) -> bool:
        return self.state is WorkerState.PARKED

    def park(self) -> None:
        """Take no new requests (503 "worker is parked") and stop health checks."""
        self._set(WorkerState.PARKED)

    async def unpark(self) -> None:
        """Wait until the backend's health check passes, then be ready again (the
        benchmark figure is kept). The caller bounds the wait."""
        while (problem := await self._health()) is not None:
            self.waiting_for = problem
            await asyncio.sleep(self.settings.ready_poll_s)
        self._set(WorkerState.READY)

    async def _watch_health(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_interval_s)
            if not self.parked:  # a sleeping backend may not answer; waking checks it
                await self._check_health()

    async def _check_health(self) -> None:
        problem = await self._health()
        if self.parked:
            return  # parked while the probe ran
        if problem is not None:
            self._set(WorkerState.ERRORED, f"health check failed: {problem}")
        elif self.state is WorkerState.ERRORED and not self._log_error_sticky():
            self._set(WorkerState.READY)

    def _log_error_sticky(self) -> bool:
        return self.error_msg.startswith("model log:")
