"""A simulation's results: a text table, a JSON document and an SVG timeline.

The table has one row per policy: its cost in active worker-seconds (every worker from its
start to its stop, STARTING, WAKING and DRAINING time included, PARKED time not) and in
parked worker-seconds, p50/p99/max queue wait, cold starts, wakes, the most workers at
once, and requests left unserved. The timeline stacks the requests arriving per tick and,
for each policy, its queue and its workers by state (starting, waking, ready and idle,
ready and busy, draining, parked), drawn as ``vespid loadtest --plot`` draws its charts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vespid.loadtest.plot import COLORS, Panel, Series, nice_step, render_panels
from vespid.simulate.engine import Result, Sample

__all__ = ["render_table", "to_json", "write_svg"]

# The parked and waking states' colours, beside the load test's palette.
EXTRA_COLORS = {"olive": "#bcbd22", "cyan": "#17becf"}
COLUMNS = (
    ("policy", "", "{}"),
    ("worker_seconds", "active worker-s", "{:.0f}"),
    ("parked_seconds", "parked worker-s", "{:.0f}"),
    ("p50_wait_s", "p50 wait", "{:.2f}"),
    ("p99_wait_s", "p99 wait", "{:.2f}"),
    ("max_wait_s", "max wait", "{:.2f}"),
    ("cold_starts", "cold starts", "{}"),
    ("wakes", "wakes", "{}"),
    ("max_workers", "max workers", "{}"),
    ("unserved", "unserved", "{}"),
)


def render_table(results: Sequence[Result]) -> str:
    """One row per policy; waits in seconds."""
    rows = [[head for _, head, _ in COLUMNS]]
    for result in results:
        summary = result.summary()
        rows.append([fmt.format(summary[key]) for key, _, fmt in COLUMNS])
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                  enumerate(zip(row, widths, strict=True)))
        for row in rows
    ]  # fmt: skip
    return "\n".join(line.rstrip() for line in lines)


def to_json(results: Sequence[Result], setup: dict[str, Any]) -> dict[str, Any]:
    """The setup (load, model, tick) and each policy's summary."""
    return {**setup, "policies": [r.summary() for r in results]}


def _changes(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """A step series with only the points where the value changes (and the last)."""
    kept = [p for i, p in enumerate(points) if i == 0 or p[1] != points[i - 1][1]]
    return kept + points[-1:] if points and kept[-1] != points[-1] else kept


def _arrivals(timeline: Sequence[Sample], end_s: float) -> list[tuple[float, float]]:
    """Requests/s arriving per bucket of about 1/200 of the run (at least a second)."""
    size = max(1.0, nice_step(end_s, 200))
    counts = [0] * (int(end_s // size) + 1)
    for sample in timeline:
        counts[min(len(counts) - 1, int(sample.t_s // size))] += sample.arrived
    return [(i * size, n / size) for i, n in enumerate(counts)]


def _series(
    line: Sequence[Sample], label: str, color: str, value: Callable[[Sample], int]
) -> Series:
    points = _changes([(s.t_s, float(value(s))) for s in line])
    return Series(label, COLORS.get(color) or EXTRA_COLORS[color], points, "step")


def _panels(results: Sequence[Result], end_s: float) -> list[Panel]:
    arrivals = _arrivals(results[0].timeline, end_s)
    panels = [Panel("Requests arriving", "requests/s",
                    [Series("arrivals", COLORS["blue"], arrivals, "step")])]  # fmt: skip
    for result in results:
        line = result.timeline
        panels.append(
            Panel(
                f"{result.policy}: queue and workers",
                "count",
                [
                    _series(line, "queued", "purple", lambda s: s.queued),
                    _series(line, "starting", "orange", lambda s: s.starting),
                    _series(line, "waking", "olive", lambda s: s.waking),
                    _series(line, "idle", "gray", lambda s: s.idle),
                    _series(line, "busy", "green", lambda s: s.busy),
                    _series(line, "draining", "red", lambda s: s.draining),
                    _series(line, "parked", "cyan", lambda s: s.parked),
                ],
                counts=True,
            )
        )
    return panels


def write_svg(results: Sequence[Result], path: Path) -> None:
    """The timeline of every policy over the same load, as one SVG file."""
    end = max(max((r.end_s for r in results), default=1.0), 1.0)
    path.write_text(render_panels(_panels(results, end), end), encoding="utf-8")
