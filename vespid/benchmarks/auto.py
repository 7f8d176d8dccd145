"""The benchmark used when BENCHMARK is unset: OpenAI-compatible servers get the real
one; any other API gets a nominal figure and a warning to set BENCHMARK."""

from __future__ import annotations

import logging
from typing import Final

import aiohttp

from vespid.benchmarks import openai

__all__ = ["NOMINAL_WORKLOAD_PER_S", "benchmark"]

log = logging.getLogger("vespid.benchmark")

NOMINAL_WORKLOAD_PER_S: Final = 100.0


async def benchmark(backend_url: str, session: aiohttp.ClientSession) -> float:
    async with session.get(f"{backend_url}/v1/models") as resp:
        openai_like = resp.status == 200
        await resp.read()
    if openai_like:
        return await openai.benchmark(backend_url, session)
    log.warning(
        "BENCHMARK is unset and the backend is not OpenAI-compatible: assuming %g workload/s. "
        "Set BENCHMARK=module:function (or VESPID_MAX_PERF) for a real figure.",
        NOMINAL_WORKLOAD_PER_S,
    )
    return NOMINAL_WORKLOAD_PER_S
