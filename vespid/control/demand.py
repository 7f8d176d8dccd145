"""An endpoint's books of recent demand at the router, and the one builder of the policy's
snapshot from them (for the control plane and ``vespid simulate`` alike).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final

from vespid.control.policy import DEFAULT_PERF, ScalingConfig, ScalingSnapshot, WorkerView

__all__ = ["RATE_WINDOW_S", "EndpointBooks"]

RATE_WINDOW_S: Final = 30.0


@dataclass
class EndpointBooks:
    """Recent demand at the router for one endpoint."""

    arrivals: deque[tuple[float, float]] = field(default_factory=deque)  # (time, cost)
    # The last throughput a worker of this endpoint measured: what a new one is assumed
    # to reach until it reports its own (better than a fixed guess on a slow model).
    last_perf: float | None = None
    rejections: deque[tuple[float, float]] = field(default_factory=deque)
    last_activity_at: float | None = None
    start_failures: int = 0  # workers in a row stopped after failing before ready

    @staticmethod
    def rate(events: deque[tuple[float, float]], now: float) -> float:
        """Workload/s over the last ``RATE_WINDOW_S`` (60 of cost in 30 s -> 2/s)."""
        since = now - RATE_WINDOW_S
        return sum(cost for at, cost in events if at >= since) / RATE_WINDOW_S

    def snapshot(
        self,
        scaling: ScalingConfig,
        workers: tuple[WorkerView, ...],
        *,
        now: float,
        rate_now: float,
        queued_load: float,
        queued_requests: int,
        ready_timeout_s: float,
        gpus_per_worker: int = 0,
        free_gpus: int | None = None,
        launching: int = 0,
        oldest_wait_s: float = 0.0,
        revision: int = 0,
    ) -> ScalingSnapshot:
        """The policy's snapshot of an endpoint with these books and ``workers``: the one
        place it is built, for the control plane and ``vespid simulate`` alike. ``now`` is
        the policy's clock; ``rate_now`` the clock the books' events were noted on;
        ``oldest_wait_s`` the age of the oldest request in the router's queue."""
        return ScalingSnapshot(
            now=now,
            params=scaling,
            default_perf=self.last_perf or DEFAULT_PERF,
            ready_timeout_s=ready_timeout_s,
            gpus_per_worker=gpus_per_worker,
            workers=workers,
            queued_load=queued_load,
            queued_requests=queued_requests,
            rejected_load_rate=self.rate(self.rejections, rate_now),
            arrival_rate=self.rate(self.arrivals, rate_now),
            last_activity_at=self.last_activity_at,
            start_failures=self.start_failures,
            free_gpus=free_gpus,
            launching=launching,
            oldest_wait_s=oldest_wait_s,
            revision=revision,
        )

    @staticmethod
    def note(events: deque[tuple[float, float]], now: float, cost: float) -> None:
        """Record an event, forgetting those past the window (memory stays bounded)."""
        while events and events[0][0] < now - RATE_WINDOW_S:
            events.popleft()
        events.append((now, cost))
