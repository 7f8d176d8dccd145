"""Workers over time: the control plane's ``GET /api/v0/status``, sampled once a second.

Each sample counts the endpoint's workers by state (``starting``, ``ready``,
``errored``, ``cold``, ``stopping``) and the requests queued at the router. A
control plane without that route (Vast's, for one) answers 404: sampling stops
and the report says why, instead of guessing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import orjson

__all__ = ["STATUS_PATH", "WorkerSample", "WorkerSampler"]

STATUS_PATH: Final = "/api/v0/status"
# Transient failures in a row (unreachable, 5xx, timeouts) before sampling gives up.
MAX_FAILURES: Final = 5


@dataclass(frozen=True, slots=True)
class WorkerSample:
    """The endpoint's workers at ``t_s`` seconds into the run."""

    t_s: float
    states: dict[str, int] = field(default_factory=dict)
    queued: int = 0

    @property
    def ready(self) -> int:
        return self.states.get("ready", 0)

    @property
    def total(self) -> int:
        return sum(self.states.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "t_s": round(self.t_s, 3),
            "ready": self.ready,
            "total": self.total,
            "queued": self.queued,
            "states": dict(self.states),
        }


def _count(status: Any, endpoint: str) -> tuple[dict[str, int], int] | None:
    """(workers by state, queued) for ``endpoint`` in a status answer; None if the
    answer is not a vespid status."""
    if not isinstance(status, dict) or not isinstance(status.get("endpoints"), list):
        return None
    for item in status["endpoints"]:
        if isinstance(item, dict) and item.get("name") == endpoint:
            states: dict[str, int] = {}
            for worker in item.get("workers") or []:
                state = worker.get("state") if isinstance(worker, dict) else None
                key = state if isinstance(state, str) else "unknown"
                states[key] = states.get(key, 0) + 1
            queued = item.get("queued")
            return states, queued if isinstance(queued, int) else 0
    return {}, 0  # the endpoint is gone (deleted mid-run): no workers


class WorkerSampler:
    """Samples ``{base_url}/api/v0/status`` every ``interval_s`` until stopped."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        base_url: str,
        endpoint: str,
        *,
        clock: Callable[[], float],
        interval_s: float = 1.0,
        timeout_s: float = 2.0,
    ) -> None:
        self.http = http
        self.url = base_url.rstrip("/") + STATUS_PATH
        self.endpoint = endpoint
        self.clock = clock
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.samples: list[WorkerSample] = []
        self.problem: str | None = None
        """Why sampling stopped early, if it did."""

    @property
    def latest(self) -> WorkerSample | None:
        return self.samples[-1] if self.samples else None

    async def sample_once(self) -> WorkerSample | None:
        """One sample; None on a transient failure. Sets ``problem`` if the control
        plane has no usable status route."""
        t_s = self.clock()
        try:
            async with asyncio.timeout(self.timeout_s), self.http.get(self.url) as resp:
                status, raw = resp.status, await resp.read()
        except (aiohttp.ClientError, TimeoutError):
            return None
        if status >= 500:
            return None
        counted = None
        if status == 200:
            with contextlib.suppress(orjson.JSONDecodeError):
                counted = _count(orjson.loads(raw), self.endpoint)
        if counted is None:
            self.problem = (
                f"GET {self.url} answered {status} without a vespid status; "
                "workers over time are not available from this control plane"
            )
            return None
        sample = WorkerSample(t_s, counted[0], counted[1])
        self.samples.append(sample)
        return sample

    async def run(self, stop: asyncio.Event) -> None:
        """Sample on a fixed beat until ``stop`` is set, or the route proves unusable."""
        failures = 0
        beat = self.clock()
        while not stop.is_set():
            sample = await self.sample_once()
            if self.problem is not None:
                return
            failures = 0 if sample is not None else failures + 1
            if failures >= MAX_FAILURES:
                self.problem = f"GET {self.url} failed {failures} times in a row; sampling stopped"
                return
            beat += self.interval_s
            if beat < self.clock():  # a slow answer: skip the beats it covered
                beat = self.clock() + self.interval_s
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, beat - self.clock())):
                    await stop.wait()
