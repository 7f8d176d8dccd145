"""Running the throughput benchmark once the backend is up, and caching its result.

A benchmark is ``async def benchmark(backend_url: str, session: aiohttp.ClientSession)
-> float`` returning workload per second at full load, named by ``BENCHMARK`` as
``module:function``. Its result is kept in ``VESPID_CACHE_DIR`` under a key made of
the model, the backend URL and the benchmark, so a restart skips it and a change of
any of the three measures again.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import inspect
import json
import logging
import time
from pathlib import Path
from typing import Final

import aiohttp

from vespid.errors import BackendError, ConfigError
from vespid.types import BenchmarkFunction

__all__ = ["BenchmarkCache", "benchmark_spec", "load_benchmark", "run_benchmark"]

log = logging.getLogger("vespid.worker")

DEFAULT_BENCHMARK: Final = "vespid.benchmarks.auto:benchmark"
NULL_BENCHMARK: Final = "vespid.benchmarks.null:benchmark"
CONNECT_RETRIES: Final = 5


def benchmark_spec(benchmark: str | None, backend: str) -> str:
    """The benchmark a worker runs: BENCHMARK, else the null or the automatic one."""
    if benchmark:
        return benchmark
    return NULL_BENCHMARK if backend == "null" else DEFAULT_BENCHMARK


def load_benchmark(spec: str) -> BenchmarkFunction:
    """Import ``module:function``; ConfigError (naming BENCHMARK) when that fails."""
    module_name, _, func_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"BENCHMARK: cannot import {module_name!r} ({exc})") from None
    func = getattr(module, func_name, None)
    # A function, or an instance whose class has ``async def __call__``.
    is_async = inspect.iscoroutinefunction(func) or (
        callable(func) and inspect.iscoroutinefunction(type(func).__call__)
    )
    if func is None or not is_async:
        raise ConfigError(
            f"BENCHMARK: {spec!r} is not an async function benchmark(backend_url, session)"
        )
    bench: BenchmarkFunction = func
    return bench


class BenchmarkCache:
    """Benchmark results on disk, one small JSON file per (model, backend, benchmark).

    The backend is its URL, or ``VESPID_BENCHMARK_KEY`` where the URL changes on every
    start although the backend does not (the control plane's local workers).
    """

    def __init__(self, directory: Path, *, model: str | None, backend_url: str, spec: str) -> None:
        key = json.dumps([model, backend_url, spec]).encode()
        self.path = directory / f"benchmark-{hashlib.sha256(key).hexdigest()[:16]}.json"
        self._key = {"model": model, "backend_url": backend_url, "benchmark": spec}

    def _read(self) -> float | None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        value = data.get("max_perf") if isinstance(data, dict) else None
        return float(value) if isinstance(value, int | float) and value > 0 else None

    def _write(self, max_perf: float) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**self._key, "max_perf": max_perf, "at": time.time()}))
        tmp.replace(self.path)

    async def get(self) -> float | None:
        return await asyncio.to_thread(self._read)

    async def put(self, max_perf: float) -> None:
        try:
            await asyncio.to_thread(self._write, max_perf)
        except OSError as exc:
            log.warning("could not cache the benchmark result in %s: %s", self.path, exc)


async def run_benchmark(
    func: BenchmarkFunction, backend_url: str, session: aiohttp.ClientSession
) -> float:
    """Run a benchmark, retrying while the backend refuses connections.

    Raises BackendError with the reason when it cannot produce a positive number.
    """
    delay_s = 0.2
    for attempt in range(1, CONNECT_RETRIES + 1):
        try:
            result: object = await func(backend_url, session)
        except aiohttp.ClientConnectionError as exc:
            if attempt == CONNECT_RETRIES:
                raise BackendError(f"benchmark could not reach the backend: {exc}") from exc
            log.warning("benchmark: backend not reachable (%s); retrying in %.1f s", exc, delay_s)
            await asyncio.sleep(delay_s)
            delay_s *= 2
            continue
        except (TimeoutError, aiohttp.ClientError, ValueError, KeyError) as exc:
            raise BackendError(f"benchmark failed: {exc!r}") from exc
        if not isinstance(result, int | float) or not result > 0:
            raise BackendError(f"benchmark returned {result!r}; expected workload/s > 0")
        return float(result)
    raise AssertionError("unreachable")
