"""Benchmark functions for tests, loaded through ``BENCHMARK=module:function``."""

from __future__ import annotations

import aiohttp

calls: list[str] = []


async def counting(backend_url: str, session: aiohttp.ClientSession) -> float:
    """Records each call; requires the backend to answer."""
    async with session.get(backend_url + "/health") as resp:
        await resp.read()
    calls.append(backend_url)
    return 42.0


async def zero(backend_url: str, session: aiohttp.ClientSession) -> float:
    return 0.0


def not_async(backend_url: str, session: aiohttp.ClientSession) -> float:
    return 1.0


# Built-in benchmarks with settings sized for the tests' small servers.
from vespid.benchmarks.comfyui import ComfyUIBenchmark  # noqa: E402
from vespid.benchmarks.openai import OpenAIBenchmark  # noqa: E402
from vespid.benchmarks.ramp import Ramp  # noqa: E402

openai_small = OpenAIBenchmark(max_tokens=8, max_prompt_words=64, ramp=Ramp(max_concurrency=4))
comfy_small = ComfyUIBenchmark(width=96, height=64, steps=3)
comfy_txt2img = ComfyUIBenchmark(workflow="txt2img")
