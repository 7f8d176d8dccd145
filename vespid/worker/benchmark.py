"""Running the throughput benchmark once the backend is up, and caching its result.

A benchmark is ``async def benchmark(backend_url: str, session: aiohttp.ClientSession)
-> float`` returning workload per second at full load, named by ``BENCHMARK`` as
``module:function``. Its result is kept in ``VESPID_CACHE_DIR`` under a key made of
the benchmark, the model named, the models the server reports and the server, so a
restart skips it and a change of any of them measures again.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import inspect
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import aiohttp

from vespid.errors import BackendError, ConfigError
from vespid.types import BenchmarkFunction

__all__ = [
    "BenchmarkCache",
    "CachedResult",
    "benchmark_spec",
    "describe_age",
    "load_benchmark",
    "run_benchmark",
]

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


@dataclass(frozen=True, slots=True)
class CachedResult:
    """A benchmark figure read from the cache, and how long ago it was measured."""

    max_perf: float
    age_s: float


class BenchmarkCache:
    """Benchmark results on disk, one small JSON file per what makes a figure valid: the
    benchmark, the model named (``MODEL_NAME``), the models the server reports
    (``vespid.worker.served_model``) and the server.

    The server is its URL, or ``VESPID_BENCHMARK_KEY`` where the URL changes on every
    start although the server does not (the control plane's local workers).
    """

    def __init__(
        self,
        directory: Path,
        *,
        benchmark: str,
        model: str | None,
        served: Sequence[str],
        server: str,
    ) -> None:
        self._what = f"model {model or ', '.join(served) or '(none named)'} at {server}"
        self._what += f" with {benchmark}"
        self.key: dict[str, object] = {
            "benchmark": benchmark,
            "model": model,
            "served_models": list(served),
            "server": server,
        }
        digest = hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()
        self.path = directory / f"benchmark-{digest[:16]}.json"

    def describe(self) -> str:
        """The key in words, for the log."""
        return self._what

    def _read(self) -> CachedResult | None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or any(data.get(k) != v for k, v in self.key.items()):
            return None
        value, at = data.get("max_perf"), data.get("at")
        if not isinstance(value, int | float) or not value > 0 or not isinstance(at, int | float):
            return None
        return CachedResult(float(value), max(0.0, time.time() - at))

    def _write(self, max_perf: float) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**self.key, "max_perf": max_perf, "at": time.time()}))
        tmp.replace(self.path)

    async def get(self) -> CachedResult | None:
        return await asyncio.to_thread(self._read)

    async def put(self, max_perf: float) -> None:
        try:
            await asyncio.to_thread(self._write, max_perf)
        except OSError as exc:
            log.warning("could not cache the benchmark result in %s: %s", self.path, exc)


def describe_age(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3.0 h`` or ``2.1 days``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


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
