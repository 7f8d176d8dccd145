"""Charts of a report as a self-contained SVG or HTML file: no plotting library.

``write_plot(report, path)`` writes ``path.svg`` (the charts alone) or
``path.html`` (a page with the text report above the same charts). Every chart
shares the x axis, seconds into the run. A request run gets latency (and time to
first byte) of each request by its start, errors marked; throughput in requests/s
and workload/s per bucket of time; and the endpoint's workers. A session run
gets each session's open latency, the sessions open, and the workers.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from vespid.errors import ConfigError
from vespid.loadtest.report import render_text

__all__ = [
    "COLORS",
    "PLOT_SUFFIXES",
    "Panel",
    "Series",
    "check_plot_path",
    "nice_step",
    "render_html",
    "render_panels",
    "render_svg",
    "write_plot",
]

PLOT_SUFFIXES: Final = (".html", ".svg")
WIDTH: Final = 860
PANEL_HEIGHT: Final = 210
LEFT, RIGHT, TOP, BOTTOM = 64, 24, 34, 34
COLORS: Final = {
    "blue": "#1f77b4",
    "orange": "#ff7f0e",
    "red": "#d62728",
    "green": "#2ca02c",
    "gray": "#7f7f7f",
    "purple": "#9467bd",
}


@dataclass(frozen=True, slots=True)
class Series:
    """Points to draw in one panel: dots, crosses, a line, or steps (held values)."""

    label: str
    color: str
    points: Sequence[tuple[float, float]]
    style: Literal["dots", "crosses", "line", "step"] = "line"


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    unit: str
    series: Sequence[Series]
    counts: bool = False  # whole numbers: no tick between 0 and 1


def check_plot_path(path: Path) -> None:
    """ConfigError unless ``path`` ends in .html or .svg (checked before a run starts)."""
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise ConfigError(
            f"--plot {path}: write the plot as .html (charts and the text report) "
            "or .svg (charts alone)"
        )


def nice_step(span: float, ticks: int = 5) -> float:
    """A step of 1, 2 or 5 times a power of ten giving about ``ticks`` ticks over ``span``."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for mult in (1, 2, 5, 10):
        if mult * magnitude >= raw:
            return mult * magnitude
    return 10 * magnitude  # pragma: no cover - the loop always returns


def _label(value: float) -> str:
    return f"{value:g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.1e}"


def _buckets(times: list[tuple[float, float]], duration: float) -> tuple[float, list[float]]:
    """Sum of weights per bucket of ``times`` ((t, weight) pairs), per second."""
    size = max(1.0, nice_step(duration, 60))
    counts = [0.0] * (int(duration // size) + 1)
    for t, weight in times:
        counts[min(len(counts) - 1, max(0, int(t // size)))] += weight
    return size, [c / size for c in counts]


def _worker_panels(report: dict[str, Any]) -> list[Panel]:
    samples = report["workers"]["samples"]
    return [
        Panel(
            "Workers (control plane status)",
            "workers",
            [
                Series("all workers", COLORS["gray"], [(s["t_s"], s["total"]) for s in samples],
                       "step"),
                Series("ready", COLORS["green"], [(s["t_s"], s["ready"]) for s in samples],
                       "step"),
            ],
            counts=True,
        ),
        Panel(
            "Queued at the router",
            "requests",
            [Series("queued", COLORS["purple"], [(s["t_s"], s["queued"]) for s in samples],
                    "step")],
            counts=True,
        ),
    ]  # fmt: skip


def _request_panels(report: dict[str, Any]) -> list[Panel]:
    requests = report["requests"]
    ok = [r for r in requests if r["outcome"] == "ok"]
    bad = [r for r in requests if r["outcome"] != "ok" and r["latency_s"] is not None]
    ends = [(r["started_s"] + r["latency_s"], 1.0) for r in ok]
    work = [(r["started_s"] + r["latency_s"], float(r["cost"])) for r in ok]
    duration = max(report["duration_s"], 1.0)
    size, rate = _buckets(ends, duration)
    _, workload = _buckets(work, duration)
    at = [(i * size, v) for i, v in enumerate(rate)]
    return [
        Panel(
            "Latency by request start",
            "s",
            [
                Series(
                    "first byte",
                    COLORS["orange"],
                    [(r["started_s"], r["ttfb_s"]) for r in ok],
                    "dots",
                ),
                Series(
                    "latency",
                    COLORS["blue"],
                    [(r["started_s"], r["latency_s"]) for r in ok],
                    "dots",
                ),
                Series(
                    "failed",
                    COLORS["red"],
                    [(r["started_s"], r["latency_s"]) for r in bad],
                    "crosses",
                ),
            ],
        ),
        Panel(
            f"Throughput (successes per {size:g} s bucket)",
            "requests/s",
            [Series("requests/s", COLORS["blue"], at, "step")],
        ),
        Panel(
            "Workload served",
            "workload/s",
            [
                Series(
                    "workload/s",
                    COLORS["orange"],
                    [(i * size, v) for i, v in enumerate(workload)],
                    "step",
                )
            ],
        ),
        *_worker_panels(report),
    ]


def _session_panels(report: dict[str, Any]) -> list[Panel]:
    sessions = report["sessions"]
    opened = [s for s in sessions if s["opened_s"] is not None]
    events = sorted(
        [(s["opened_s"], 1) for s in opened]
        + [(s["closed_s"], -1) for s in opened if s["closed_s"] is not None]
    )
    level, steps = 0, [(0.0, 0.0)]
    for t, change in events:
        level += change
        steps.append((t, float(level)))
    steps.append((report["duration_s"], float(level)))
    return [
        Panel(
            "Session open latency by request time",
            "s",
            [
                Series(
                    "open latency",
                    COLORS["blue"],
                    [(s["started_s"], s["open_latency_s"]) for s in opened],
                    "dots",
                )
            ],
        ),
        Panel(
            "Sessions open",
            "sessions",
            [Series("open", COLORS["orange"], steps, "step")],
            counts=True,
        ),
        *_worker_panels(report),
    ]


def _path(points: list[tuple[float, float]], step: bool) -> str:
    out: list[str] = []
    for i, (x, y) in enumerate(points):
        if step and i:
            out.append(f"L{x:.1f},{points[i - 1][1]:.1f}")
        out.append(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}")
    return " ".join(out)


def _panel_svg(panel: Panel, top: float, x_max: float) -> list[str]:
    inner_w = WIDTH - LEFT - RIGHT
    inner_h = PANEL_HEIGHT - TOP - BOTTOM
    values = [y for s in panel.series for _, y in s.points]
    top_value = max(values, default=0.0)
    y_step = nice_step(top_value or 1.0, 4)
    if panel.counts:
        y_step = max(1.0, y_step)
    # One step of headroom, so that a line at the highest value does not merge with the frame.
    y_max = y_step * (math.floor(top_value / y_step) + 1)
    x_step = nice_step(x_max, 8)

    def px(x: float) -> float:
        return LEFT + inner_w * min(max(x, 0.0), x_max) / x_max

    def py(y: float) -> float:
        return top + TOP + inner_h * (1 - min(max(y, 0.0), y_max) / y_max)

    e = html.escape
    out = [
        f'<text x="{LEFT}" y="{top + 20}" font-size="14" font-weight="bold">'
        f"{e(panel.title)}</text>",
        f'<text x="{LEFT - 8}" y="{top + 20}" font-size="11" text-anchor="end" '
        f'fill="#555">{e(panel.unit)}</text>',
    ]
    y = 0.0
    while y <= y_max + y_step / 1000:
        out.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{py(y):.1f}" y2="{py(y):.1f}" '
            'stroke="#e5e5e5"/>'
            f'<text x="{LEFT - 6}" y="{py(y) + 4:.1f}" font-size="11" text-anchor="end">'
            f"{_label(y)}</text>"
        )
        y += y_step
    x = 0.0
    bottom = top + TOP + inner_h
    while x <= x_max + x_step / 1000:
        out.append(
            f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{bottom}" y2="{bottom + 4}" '
            'stroke="#333"/>'
            f'<text x="{px(x):.1f}" y="{bottom + 16}" font-size="11" text-anchor="middle">'
            f"{_label(x)}</text>"
        )
        x += x_step
    out.append(
        f'<rect x="{LEFT}" y="{top + TOP}" width="{inner_w}" height="{inner_h}" fill="none" '
        'stroke="#333"/>'
        f'<text x="{WIDTH - RIGHT}" y="{bottom + 30}" font-size="11" text-anchor="end" '
        'fill="#555">seconds into the run</text>'
    )
    legend_x = WIDTH - RIGHT
    for s in reversed(panel.series):
        text = f"{s.label} ({len(s.points)})" if s.style in ("dots", "crosses") else s.label
        legend_x -= 12 + 7 * len(text)
        out.append(
            f'<rect x="{legend_x}" y="{top + 11}" width="9" height="9" fill="{s.color}"/>'
            f'<text x="{legend_x + 13}" y="{top + 20}" font-size="11">{e(text)}</text>'
        )
    for s in panel.series:
        points = [(px(x), py(y)) for x, y in s.points]
        if s.style == "dots":
            out.extend(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.6" fill="{s.color}" fill-opacity="0.75"/>'
                for x, y in points
            )
        elif s.style == "crosses":
            out.extend(
                f'<path d="M{x - 3:.1f},{y - 3:.1f} L{x + 3:.1f},{y + 3:.1f} M{x - 3:.1f},'
                f'{y + 3:.1f} L{x + 3:.1f},{y - 3:.1f}" stroke="{s.color}" stroke-width="1.6"/>'
                for x, y in points
            )
        elif points:
            out.append(
                f'<path d="{_path(points, s.style == "step")}" fill="none" stroke="{s.color}" '
                'stroke-width="1.8"/>'
            )
    return out


def render_svg(report: dict[str, Any]) -> str:
    """The report's charts, stacked, as one SVG document."""
    panels = _session_panels(report) if report["mode"] == "sessions" else _request_panels(report)
    return render_panels(panels, max(report["duration_s"], 1.0))


def render_panels(panels: Sequence[Panel], x_max: float) -> str:
    """``panels`` stacked over one x axis (0 to ``x_max`` seconds), as one SVG document."""
    height = PANEL_HEIGHT * len(panels) + 10
    body: list[str] = []
    for i, panel in enumerate(panels):
        body.extend(_panel_svg(panel, i * PANEL_HEIGHT, x_max))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">'
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>' + "".join(body) + "</svg>\n"
    )


def render_html(report: dict[str, Any]) -> str:
    """A page with the text report above the charts; opens in any browser, offline."""
    title = html.escape(f"vespid loadtest: {report['endpoint']}")
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8">'
        f"<title>{title}</title><style>body{{font-family:sans-serif;margin:24px;color:#222}}"
        "pre{background:#f6f6f6;padding:12px;overflow-x:auto}</style></head>\n<body>"
        f"<h1>{title}</h1>\n<pre>{html.escape(render_text(report))}</pre>\n"
        + render_svg(report)
        + "</body></html>\n"
    )


def write_plot(report: dict[str, Any], path: Path) -> None:
    """Write ``report``'s charts to ``path``: .svg alone, or .html with the text."""
    check_plot_path(path)
    text = render_svg(report) if path.suffix.lower() == ".svg" else render_html(report)
    path.write_text(text, encoding="utf-8")
