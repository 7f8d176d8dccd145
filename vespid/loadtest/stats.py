"""Percentiles and summaries: small, exact, no dependencies."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["percentile", "summary"]


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of sorted values, interpolating between ranks.

    Worked example: ``percentile([1, 2, 3, 4], 50)`` is 2.5; ``p90`` of the same is 3.7.
    """
    if not ordered:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within 0..100 (got {q})")
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Iterable[float], digits: int = 4) -> dict[str, float] | None:
    """``{"p50", "p90", "p99", "min", "mean", "max"}`` of ``values``; None if empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    out = {f"p{q}": percentile(ordered, q) for q in (50, 90, 99)}
    out.update(min=ordered[0], mean=sum(ordered) / len(ordered), max=ordered[-1])
    return {k: round(v, digits) for k, v in out.items()}
