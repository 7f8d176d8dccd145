"""Benchmark for OpenAI-compatible servers (vLLM, llama.cpp, Ollama, TGI in OpenAI mode).

Workload is tokens generated (``usage.completion_tokens``, else ``max_tokens``).
Concurrency doubles (1, 2, 4, ...) while throughput keeps rising by more than
10 %; the best throughput seen is the result.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, Final

import aiohttp

__all__ = ["benchmark", "measure_level", "pick_model"]

log = logging.getLogger("vespid.benchmark")

WORDS: Final = [
    "river",
    "mountain",
    "quiet",
    "garden",
    "letter",
    "window",
    "morning",
    "engine",
    "silver",
    "orange",
    "history",
    "planet",
    "question",
    "market",
    "story",
    "winter",
    "coffee",
    "bridge",
    "signal",
    "forest",
    "number",
    "pattern",
    "travel",
    "kitchen",
    "music",
    "simple",
    "ocean",
    "system",
    "little",
    "library",
    "yellow",
    "theory",
]
MAX_TOKENS: Final = 32
MAX_CONCURRENCY: Final = 16


def _prompt(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(8, 48)))


async def pick_model(backend_url: str, session: aiohttp.ClientSession) -> str | None:
    """The first model the server lists at /v1/models, if any."""
    async with session.get(f"{backend_url}/v1/models") as resp:
        if resp.status != 200:
            return None
        data: Any = await resp.json(content_type=None)
    models = data.get("data") if isinstance(data, dict) else None
    if isinstance(models, list) and models and isinstance(models[0], dict):
        model_id = models[0].get("id")
        return str(model_id) if model_id is not None else None
    return None


async def _one(
    backend_url: str, session: aiohttp.ClientSession, model: str | None, rng: random.Random
) -> float:
    body: dict[str, Any] = {"prompt": _prompt(rng), "max_tokens": MAX_TOKENS, "temperature": 0.8}
    if model:
        body["model"] = model
    async with session.post(f"{backend_url}/v1/completions", json=body) as resp:
        if resp.status != 200:
            raise ValueError(f"/v1/completions answered {resp.status}: {await resp.text()}")
        data: Any = await resp.json(content_type=None)
    usage = data.get("usage") if isinstance(data, dict) else None
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return float(tokens) if isinstance(tokens, int | float) else float(MAX_TOKENS)


async def measure_level(
    backend_url: str,
    session: aiohttp.ClientSession,
    model: str | None,
    concurrency: int,
    rng: random.Random,
) -> float:
    """Throughput (tokens/s) of two waves of ``concurrency`` parallel requests."""
    start = time.perf_counter()
    total = 0.0
    for _ in range(2):
        results = await asyncio.gather(
            *(_one(backend_url, session, model, rng) for _ in range(concurrency))
        )
        total += sum(results)
    return total / (time.perf_counter() - start)


async def benchmark(backend_url: str, session: aiohttp.ClientSession) -> float:
    rng = random.Random(0)
    model = await pick_model(backend_url, session)
    await _one(backend_url, session, model, rng)  # warm-up, not measured
    best = 0.0
    concurrency = 1
    while concurrency <= MAX_CONCURRENCY:
        throughput = await measure_level(backend_url, session, model, concurrency, rng)
        log.info("benchmark: concurrency %d -> %.1f tokens/s", concurrency, throughput)
        if throughput <= best * 1.1:
            best = max(best, throughput)
            break
        best = throughput
        concurrency *= 2
    log.info("Benchmark complete: %.1f workload/s", best)
    return best
