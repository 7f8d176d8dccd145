"""The load a simulation replays: request arrivals with prompt and output sizes.

``read_trace`` reads a CSV in the Azure LLM inference trace's format (``TIMESTAMP``,
``ContextTokens``, ``GeneratedTokens``; one request a row); ``generate`` draws a seeded
load of one of three shapes (``LoadShape``): steady Poisson arrivals, a diurnal ramp
(a sine between ``low`` × rate and rate over ``period_s``) or on/off bursts (rate for
``on_s``, then ``low`` × rate for ``off_s``). Generated sizes are exponential around
their means (at least one token). The same seed gives the same load.
"""

from __future__ import annotations

import csv
import enum
import math
import random
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from vespid.errors import ConfigError

__all__ = ["Arrival", "LoadShape", "LoadSpec", "generate", "read_trace"]


@dataclass(frozen=True, slots=True)
class Arrival:
    """One request: when it arrives (s from the load's start) and its sizes in tokens."""

    at_s: float
    prompt_tokens: int
    output_tokens: int


class LoadShape(enum.Enum):
    POISSON = "poisson"
    DIURNAL = "diurnal"
    BURSTS = "bursts"


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """A generated load: ``rate_per_s`` is the peak arrival rate (the mean for Poisson)."""

    shape: LoadShape
    rate_per_s: float
    duration_s: float
    seed: int = 0
    mean_prompt: float = 1000.0
    mean_output: float = 200.0
    period_s: float = 600.0  # diurnal: one cycle
    on_s: float = 60.0  # bursts: at the full rate
    off_s: float = 240.0  # bursts: at low × rate
    low: float = 0.1  # the trough, as a fraction of the rate

    def rate_at(self, t: float) -> float:
        """The arrival rate at ``t`` seconds."""
        if self.shape is LoadShape.POISSON:
            return self.rate_per_s
        if self.shape is LoadShape.DIURNAL:
            wave = (1 - math.cos(2 * math.pi * t / self.period_s)) / 2  # 0 at t=0, 1 mid-cycle
            return self.rate_per_s * (self.low + (1 - self.low) * wave)
        on = t % (self.on_s + self.off_s) < self.on_s
        return self.rate_per_s * (1.0 if on else self.low)


def generate(spec: LoadSpec) -> list[Arrival]:
    """Arrivals drawn by thinning a Poisson process at the peak rate (Lewis and Shedler)."""
    if not (spec.rate_per_s > 0 and spec.duration_s > 0):
        raise ConfigError("a generated load needs a rate > 0 and a duration > 0")
    rng = random.Random(spec.seed)
    arrivals: list[Arrival] = []
    t = 0.0
    while True:
        t += rng.expovariate(spec.rate_per_s)
        if t >= spec.duration_s:
            return arrivals
        if rng.random() * spec.rate_per_s <= spec.rate_at(t):
            prompt = max(1, round(rng.expovariate(1 / spec.mean_prompt)))
            output = max(1, round(rng.expovariate(1 / spec.mean_output)))
            arrivals.append(Arrival(t, prompt, output))


def _parse_time(text: str) -> datetime:
    """'2023-11-16 18:17:03.9799600': seven fraction digits, one more than Python reads."""
    head, _, fraction = text.strip().partition(".")
    return datetime.fromisoformat(f"{head}.{(fraction + '000000')[:6]}")


def read_trace(path: Path, *, speed: float = 1.0, limit: int = 0) -> list[Arrival]:
    """The trace's requests, offset from the first and divided by ``speed``, in time order;
    only the first ``limit`` rows when it is above 0."""
    arrivals: list[Arrival] = []
    start: datetime | None = None
    try:
        with path.open(newline="") as file:
            for row in csv.DictReader(file):
                at = _parse_time(row["TIMESTAMP"])
                start = at if start is None else start
                offset = (at - start).total_seconds() / speed
                arrivals.append(
                    Arrival(offset, int(row["ContextTokens"]), int(row["GeneratedTokens"]))
                )
                if limit and len(arrivals) >= limit:
                    break
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"{path}: not a trace CSV (TIMESTAMP, ContextTokens, "
                          f"GeneratedTokens): {exc}") from None  # fmt: skip
    arrivals.sort(key=lambda a: a.at_s)
    return arrivals
