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
