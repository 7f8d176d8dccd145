"""A load test's plan: how many requests, how fast (a rate, a concurrency, or a replay's
own start times), and its bounds on time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vespid.errors import ConfigError

__all__ = ["LoadPlan", "check_positive"]


def check_positive(name: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ConfigError(f"{name} must be > 0 (got {value!r})")


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """How many requests, how fast, and the bounds on time."""

    endpoint: str
    requests: int
    rps: float | None = None
    concurrency: int | None = None
    timeout_s: float = 600.0
    max_time_s: float = 3600.0
    sample_interval_s: float = 1.0
    schedule: tuple[float, ...] = ()  # with rps: request i starts at schedule[i] (a replay)

    def __post_init__(self) -> None:
        if self.requests < 1:
            raise ConfigError(f"the number of requests must be at least 1 (got {self.requests})")
        if self.concurrency is not None and self.concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1 (got {self.concurrency})")
        for name in ("rps", "timeout_s", "max_time_s", "sample_interval_s"):
            check_positive(name, getattr(self, name))
        if self.schedule and (self.rps is None or len(self.schedule) < self.requests):
            raise ConfigError(
                f"a schedule needs rps and a start time for each of the {self.requests} "
                f"requests (got {len(self.schedule)})"
            )

    @property
    def lanes(self) -> int:
        """Concurrency of the closed loop (1 when neither rate nor concurrency is set)."""
        return self.concurrency or 1

    def start_s(self, index: int) -> float:
        """Seconds into the open loop at which request ``index`` starts."""
        if self.schedule:
            return self.schedule[index]
        return index / (self.rps or 1.0)

    def describe(self) -> str:
        """``40 requests at 2 rps`` / ``40 requests, 4 at a time``."""
        if self.rps is not None:
            cap = f" (at most {self.concurrency} in flight)" if self.concurrency else ""
            return f"{self.requests} requests at {self.rps:g} rps{cap}"
        return f"{self.requests} requests, {self.lanes} at a time"

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "requests": self.requests,
            "rps": self.rps,
            "concurrency": self.concurrency,
            "timeout_s": self.timeout_s,
            "max_time_s": self.max_time_s,
            "sample_interval_s": self.sample_interval_s,
        }
