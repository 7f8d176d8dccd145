"""Type aliases and protocols for the pieces users plug into vespid."""

from __future__ import annotations

from typing import Protocol

import aiohttp

__all__ = ["BenchmarkFunction"]


class BenchmarkFunction(Protocol):
    """``BENCHMARK=module:function``: measure workload per second at full load."""

    async def __call__(self, backend_url: str, session: aiohttp.ClientSession, /) -> float: ...
