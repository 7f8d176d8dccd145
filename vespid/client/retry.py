"""When to ask again, how long to wait, and for how long in all: pure rules with no I/O.

Polling a queued route and re-routing after a failed worker both wait
``uniform(lo, hi)`` with ``hi = min(2**attempt + uniform(0, 1), max_poll_interval_s)``
and ``lo = min(0.1, hi)``: the protocol's backoff (PROTOCOL.md section 7). Worked
example with the default cap of 5 s: attempt 0 waits between 0.1 s and 1-2 s,
attempt 2 between 0.1 s and 4-5 s, attempt 3 and later between 0.1 s and 5 s.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any, Final

from vespid.errors import ConfigError

__all__ = [
    "RETRYABLE_STATUSES",
    "Deadline",
    "Limits",
    "describe_body",
    "is_retryable",
    "poll_delay_s",
]

# Worker statuses after which the request goes to another worker (PROTOCOL.md 1 and 5):
# 408 timed out, 429 too busy, 5xx broken or gone.
RETRYABLE_STATUSES: Final = frozenset({408, 429})


def is_retryable(status: int) -> bool:
    return status in RETRYABLE_STATUSES or 500 <= status < 600


def poll_delay_s(attempt: int, max_poll_interval_s: float, rng: random.Random) -> float:
    """Seconds to wait before ask number ``attempt + 1`` (``attempt`` counts from 0)."""
    hi = min(2.0 ** min(attempt, 20) + rng.uniform(0.0, 1.0), max_poll_interval_s)
    return rng.uniform(min(0.1, hi), hi)


def describe_body(body: Any, limit: int = 300) -> str:
    """A short human line for an error body: its ``error`` field if JSON, else the text."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, str):
            return error
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    text = body if isinstance(body, str) else repr(body)
    return text if len(text) <= limit else text[:limit] + "..."


class Deadline:
    """One request's overall deadline, on the event loop's clock."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._loop = asyncio.get_running_loop()
        self.started = self._loop.time()
        self.at = self.started + timeout_s

    def remaining_s(self) -> float:
        return max(0.0, self.at - self._loop.time())

    def elapsed_s(self) -> float:
        return self._loop.time() - self.started


@dataclass(frozen=True, slots=True)
class Limits:
    """A client's bounds on time and attempts (see ``Client`` for each one's meaning);
    ``ConfigError`` if one is out of range."""

    timeout_s: float = 600.0
    max_poll_interval_s: float = 5.0
    max_attempts: int = 5
    connect_timeout_s: float = 10.0
    control_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        for name in ("timeout_s", "max_poll_interval_s", "connect_timeout_s", "control_timeout_s"):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"{name} must be > 0 seconds (got {value!r})")
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1 (got {self.max_attempts!r})")
