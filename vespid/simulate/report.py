"""A simulation's results: a text table, a JSON document and an SVG timeline.

The table has one row per policy: cost in worker-seconds (every worker from its start to
its stop, STARTING time included), p50/p99/max queue wait, cold starts, the most workers
at once, and requests left unserved. The timeline stacks the requests arriving per tick
and, for each policy, its queue and its workers by state (starting, ready and idle, ready
and busy), drawn as ``vespid loadtest --plot`` draws its charts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vespid.loadtest.plot import COLORS, Panel, Series, render_panels
from vespid.simulate.engine import Result

__all__ = ["render_table", "to_json", "write_svg"]

COLUMNS = (
    ("policy", "", "{}"),
    ("worker_seconds", "worker-s", "{:.0f}"),
    ("p50_wait_s", "p50 wait", "{:.2f}"),
    ("p99_wait_s", "p99 wait", "{:.2f}"),
    ("max_wait_s", "max wait", "{:.2f}"),
    ("cold_starts", "cold starts", "{}"),
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


def _panels(results: Sequence[Result]) -> list[Panel]:
    first = results[0].timeline
    tick = first[1].t_s - first[0].t_s if len(first) > 1 else 1.0
    panels = [
        Panel(
            "Requests arriving",
            "requests/s",
            [Series("arrivals", COLORS["blue"], [(s.t_s, s.arrived / tick) for s in first],
                    "step")],
        )
    ]  # fmt: skip
    for result in results:
        line = result.timeline
        panels.append(
            Panel(
                f"{result.policy}: queue and workers",
                "count",
                [
                    Series("queued", COLORS["purple"], [(s.t_s, s.queued) for s in line], "step"),
                    Series("starting", COLORS["orange"], [(s.t_s, s.starting) for s in line],
                           "step"),
                    Series("idle", COLORS["gray"], [(s.t_s, s.idle) for s in line], "step"),
                    Series("busy", COLORS["green"], [(s.t_s, s.busy) for s in line], "step"),
                ],
                counts=True,
            )
        )  # fmt: skip
    return panels


def write_svg(results: Sequence[Result], path: Path) -> None:
    """The timeline of every policy over the same load, as one SVG file."""
    end = max((r.end_s for r in results), default=1.0)
    path.write_text(render_panels(_panels(results), max(end, 1.0)), encoding="utf-8")
