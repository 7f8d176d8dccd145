"""Waiting on a condition with a deadline, for state that offers no event to wait on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["wait_until"]


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Re-check ``predicate`` every few milliseconds; TimeoutError after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polling plain attributes of other objects
            await asyncio.sleep(0.005)
