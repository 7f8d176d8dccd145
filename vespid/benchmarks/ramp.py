"""The concurrency ramp every built-in benchmark shares.

A benchmark supplies one coroutine that sends one realistic request and returns the
workload it completed (tokens generated, or an image's width * height * steps based
cost). The ramp runs a level of requests at concurrency 1, then 2, 4, 8, ... and stops
as soon as a level's throughput fails to beat the best so far by ``min_gain``; the best
throughput seen is the result, in workload per second.

Worked example (min_gain 0.10): levels measure 40, 75, 120, 126 workload/s. 126 is not
more than 120 * 1.10 = 132, so the ramp stops there and returns 126, the best seen.

Each level keeps ``concurrency`` requests in flight and sends
``max(min_requests, concurrency * requests_per_slot)`` in all, so a level lasts a few
request times however wide it is. A failed request stops the benchmark with the
request's own error (the worker then reports it as the reason it is errored). Once
``budget_s`` (10 s) has passed since the first level (or since ``started``, when the caller
spent some of the budget already, e.g. probing the longest prompt), lanes send no more
requests and no new level starts: the result is then the best seen so far, a lower bound,
so that a worker's first start is not held up by a long climb on a slow model.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from vespid.errors import BackendError

__all__ = ["OneRequest", "Ramp", "measure_level", "ramp", "read_json"]

log = logging.getLogger("vespid.benchmark")

OneRequest = Callable[[random.Random], Awaitable[float]]
"""Send one benchmark request; return the workload it completed."""


@dataclass(frozen=True, slots=True)
class Ramp:
    """How far and how finely the ramp climbs."""

    start_concurrency: int = 1
    max_concurrency: int = 64
    requests_per_slot: int = 2
    min_requests: int = 4
    min_gain: float = 0.10
    warmup_requests: int = 1
    budget_s: float = 10.0  # no new level starts after this long: a cold start waits on it

    def __post_init__(self) -> None:
        if not 1 <= self.start_concurrency <= self.max_concurrency:
            raise ValueError("need 1 <= start_concurrency <= max_concurrency")
        if self.requests_per_slot < 1 or self.min_requests < 1 or self.min_gain < 0:
            raise ValueError("requests_per_slot and min_requests must be >= 1, min_gain >= 0")
        if self.budget_s < 0:
            raise ValueError("budget_s must be >= 0")


async def measure_level(
    one: OneRequest,
    concurrency: int,
    requests: int,
    rng: random.Random,
    deadline: float | None = None,
) -> float:
    """Workload per second of ``requests`` requests sent ``concurrency`` at a time; past
    ``deadline`` (monotonic) each lane finishes the request it has and sends no more."""
    remaining = requests
    done = 0.0

    async def lane() -> None:
        nonlocal remaining, done
        sent = 0
        while remaining > 0 and (sent == 0 or deadline is None or time.monotonic() < deadline):
            remaining -= 1
            sent += 1
            got = await one(rng)  # not `done += await ...`: that reads `done` before the wait
            done += got

    start = time.perf_counter()
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(concurrency):
                group.create_task(lane())
    except BaseExceptionGroup as failed:
        # The first failure is the reason; the other lanes were cancelled with it.
        raise failed.exceptions[0] from None
    return done / max(time.perf_counter() - start, 1e-9)


async def ramp(
    one: OneRequest,
    *,
    name: str,
    settings: Ramp | None = None,
    seed: int = 0,
    started: float | None = None,
) -> float:
    """Climb concurrency until throughput stops rising; the best workload/s seen.

    ``started`` (monotonic): when the budget began, if before this call."""
    s = settings or Ramp()
    rng = random.Random(seed)
    for _ in range(s.warmup_requests):
        await one(rng)  # loads caches and lazy state; not measured
    best = 0.0
    best_at = s.start_concurrency
    concurrency = s.start_concurrency
    if started is None:
        started = time.monotonic()
    while concurrency <= s.max_concurrency:
        if best and time.monotonic() - started >= s.budget_s:
            log.info("%s benchmark: %.0f s budget spent; stopping the climb", name, s.budget_s)
            break
        requests = max(s.min_requests, concurrency * s.requests_per_slot)
        throughput = await measure_level(
            one, concurrency, requests, rng, deadline=started + s.budget_s
        )
        log.info("%s benchmark: concurrency %d -> %.1f workload/s", name, concurrency, throughput)
        if throughput <= best * (1 + s.min_gain):
            if throughput > best:
                best, best_at = throughput, concurrency
            break
        best, best_at = throughput, concurrency
        concurrency *= 2
    log.info("%s benchmark: best %.1f workload/s at concurrency %d", name, best, best_at)
    return best


async def read_json(resp: aiohttp.ClientResponse, what: str, hint: str) -> Any:
    """The JSON body of a 200 answer; BackendError naming the call, the answer and ``hint``
    otherwise (the worker shows that message as the reason it is errored)."""
    body = await resp.read()
    if resp.status != 200:
        text = body[:300].decode(errors="replace")
        raise BackendError(f"{what} answered {resp.status}: {text} ({hint})")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body[:120].decode(errors="replace")
        raise BackendError(
            f"{what} answered 200 with a body that is not JSON: {text!r} ({hint})"
        ) from None
