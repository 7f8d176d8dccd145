"""The whole integration of a custom API: one benchmark function.

``BENCHMARK=examples.custom.benchmark:benchmark``. Workload is words embedded (what the
server reports as ``tokens``); clients send the same count as ``cost``. The shared ramp
raises concurrency until throughput stops rising and returns words per second.
"""

from __future__ import annotations

import random

import aiohttp

from vespid.benchmarks.ramp import ramp, read_json
from vespid.benchmarks.words import preload_words, prompt


async def benchmark(backend_url: str, session: aiohttp.ClientSession) -> float:
    await preload_words()

    async def one(rng: random.Random) -> float:
        texts = [prompt(rng, 8, 64) for _ in range(rng.randint(1, 8))]
        async with session.post(f"{backend_url}/embed", json={"texts": texts}) as resp:
            answer = await read_json(resp, f"POST {backend_url}/embed", "is it the embed server?")
        return float(answer["tokens"])

    return await ramp(one, name="embed")
