"""The null worker's benchmark: there is no model, so capacity is one session's cost."""

from __future__ import annotations

from typing import Final

import aiohttp

__all__ = ["NULL_MAX_PERF", "benchmark"]

NULL_MAX_PERF: Final = 100.0


async def benchmark(backend_url: str, session: aiohttp.ClientSession) -> float:
    return NULL_MAX_PERF
