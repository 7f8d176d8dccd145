"""The closing report: one JSON-ready dict per run, and its text for a terminal.

A request run's report (``mode: "requests"``) has ``counts`` that add up
(``requested = sent + not_sent``, ``sent = ok + failed + cancelled``),
``by_status`` over the sent requests (HTTP status of each answer, or what went
wrong: ``timeout``, ``worker_unavailable``, ``route_refused 429``...), latency and
time-to-first-byte percentiles over the successful requests, throughput
(successful requests and their workload per second of the run), the workers
sampled over time, and every request. A session run's report (``mode:
"sessions"``) has the sessions' counts, open latencies, and each session. The
text is made from the dict alone, so a saved JSON report can be printed again.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Final

import orjson

from vespid.loadtest.runner import RequestRun, Run
from vespid.loadtest.sessions import SessionRun
from vespid.loadtest.stats import summary

__all__ = [
    "REPORT_VERSION",
    "render_text",
    "request_report",
    "session_report",
    "workers_report",
    "write_json",
]

REPORT_VERSION: Final = 1
# Worker timeline lines the text shows before eliding the middle.
TIMELINE_LINES: Final = 12


def workers_report(run: Run) -> dict[str, Any]:
    """Samples of the endpoint's workers, the peaks, when the first worker was ready,
    and the samples where the workers changed (their states; the queue is noted)."""
    sampler = run.sampler
    if sampler is None:
        return {"interval_s": None, "sampled": 0, "problem": "not sampled", "samples": []}
    samples = sampler.samples
    changes = []
    last: dict[str, int] | None = None
    for s in samples:
        if s.states != last:
            changes.append(s.to_json())
            last = s.states
    return {
        "interval_s": sampler.interval_s,
        "sampled": len(samples),
        "problem": sampler.problem,
        "max_ready": max((s.ready for s in samples), default=0),
        "max_total": max((s.total for s in samples), default=0),
        "max_queued": max((s.queued for s in samples), default=0),
        "first_ready_s": next((round(s.t_s, 3) for s in samples if s.ready), None),
        "changes": changes,
        "samples": [s.to_json() for s in samples],
    }


def _per_s(value: float, seconds: float) -> float:
    return round(value / seconds, 4) if seconds > 0 else 0.0


def request_report(run: RequestRun, *, source: str = "") -> dict[str, Any]:
    """The report of a finished request run; ``source`` says what was sent."""
    records = sorted(run.records, key=lambda r: r.index)
    ok = [r for r in records if r.outcome == "ok"]
    cancelled = sum(r.outcome == "cancelled" for r in records)
    retried = [r for r in records if (r.attempts or 0) > 1]
    elapsed = run.elapsed_s
    return {
        "version": REPORT_VERSION,
        "mode": "requests",
        "endpoint": run.plan.endpoint,
        "plan": run.plan.to_json(),
        "description": run.plan.describe(),
        "source": source,
        "started_at": run.started_at,
        "duration_s": round(elapsed, 4),
        "stopped": run.stopped,
        "counts": {
            "requested": run.plan.requests,
            "sent": len(records),
            "ok": len(ok),
            "failed": len(records) - len(ok) - cancelled,
            "cancelled": cancelled,
            "not_sent": run.plan.requests - len(records),
        },
        "by_status": dict(sorted(Counter(r.key for r in records).items())),
        "latency_s": summary(r.latency_s for r in ok if r.latency_s is not None),
        "ttfb_s": summary(r.ttfb_s for r in ok if r.ttfb_s is not None),
        "throughput": {
            "requests_per_s": _per_s(len(ok), elapsed),
            "workload_per_s": _per_s(sum(r.cost for r in ok), elapsed),
            "bytes_per_s": _per_s(sum(r.bytes for r in ok), elapsed),
        },
        "retries": {
            "retried": len(retried),
            "max_attempts": max((r.attempts or 0 for r in records), default=0),
        },
        "workers": workers_report(run),
        "requests": [r.to_json() for r in records],
    }


def session_report(run: SessionRun) -> dict[str, Any]:
    """The report of a finished session run."""
    records = sorted(run.records, key=lambda r: r.index)
    opened = [r for r in records if r.opened]
    cancelled = sum(r.outcome == "cancelled" for r in records)
    return {
        "version": REPORT_VERSION,
        "mode": "sessions",
        "endpoint": run.plan.endpoint,
        "plan": run.plan.to_json(),
        "description": run.plan.describe(),
        "started_at": run.started_at,
        "duration_s": round(run.elapsed_s, 4),
        "stopped": run.stopped,
        "counts": {
            "requested": run.plan.sessions,
            "started": len(records),
            "opened": len(opened),
            "failed": len(records) - len(opened) - cancelled,
            "cancelled": cancelled,
            "not_started": run.plan.sessions - len(records),
            "closed": sum(r.closed_s is not None for r in records),
        },
        "open_latency_s": summary(r.open_latency_s for r in opened if r.open_latency_s is not None),
        "max_open": _max_open(records),
        "workers": workers_report(run),
        "sessions": [r.to_json() for r in records],
    }


def _max_open(records: list[Any]) -> int:
    events = sorted(
        [(r.opened_s, 1) for r in records if r.opened_s is not None]
        + [(r.closed_s, -1) for r in records if r.closed_s is not None and r.opened_s is not None]
    )
    peak = level = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def write_json(report: dict[str, Any], path: Path) -> None:
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")


# -- text --------------------------------------------------------------------------


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _dist(stats: dict[str, float] | None) -> str:
    if stats is None:
        return "no successful request"
    return (
        f"p50 {_seconds(stats['p50'])}, p90 {_seconds(stats['p90'])}, "
        f"p99 {_seconds(stats['p99'])} (min {_seconds(stats['min'])}, "
        f"mean {_seconds(stats['mean'])}, max {_seconds(stats['max'])})"
    )


def _workers_lines(workers: dict[str, Any]) -> list[str]:
    if not workers["sampled"]:
        return [f"workers      not sampled: {workers.get('problem') or 'no sample taken'}"]
    first = workers["first_ready_s"]
    lines = [
        f"workers      {workers['sampled']} samples, every {workers['interval_s']:g} s: "
        f"at most {workers['max_ready']} ready, {workers['max_total']} in all, "
        f"{workers['max_queued']} queued at the router; "
        + (f"first ready at {first:.1f} s" if first is not None else "none ready")
    ]
    if workers.get("problem"):
        lines.append(f"             sampling stopped early: {workers['problem']}")
    changes = workers["changes"]
    shown: list[dict[str, Any] | None] = list(changes)
    if len(changes) > TIMELINE_LINES:
        half = TIMELINE_LINES // 2
        shown = [*changes[:half], None, *changes[-(TIMELINE_LINES - half - 1) :]]
    for change in shown:
        if change is None:
            lines.append("             ...")
            continue
        others = ", ".join(f"{k} {v}" for k, v in sorted(change["states"].items()) if k != "ready")
        queued = f", {change['queued']} queued" if change["queued"] else ""
        lines.append(
            f"  {change['t_s']:8.1f} s  {change['ready']} ready of {change['total']}"
            + (f" ({others})" if others else "")
            + queued
        )
    return lines


def _header(report: dict[str, Any]) -> list[str]:
    mode = " --sessions" if report["mode"] == "sessions" else ""
    source = f", {report['source']}" if report.get("source") else ""
    stopped = {"max_time": "stopped at the time limit", "interrupted": "interrupted"}
    ended = f" ({stopped.get(report['stopped'], report['stopped'])})" if report["stopped"] else ""
    return [
        f"vespid loadtest{mode}: endpoint {report['endpoint']}, {report['description']}{source}",
        f"ran          {report['duration_s']:.1f} s{ended}",
    ]


def render_text(report: dict[str, Any]) -> str:
    """The report for people: a dozen lines, then the workers' timeline."""
    lines = _header(report)
    c = report["counts"]
    if report["mode"] == "sessions":
        lines += [
            f"sessions     {c['requested']} asked: {c['opened']} opened, {c['failed']} failed, "
            f"{c['cancelled']} cancelled, {c['not_started']} not started; {c['closed']} closed",
            f"open latency {_dist(report['open_latency_s'])}",
            f"most open    {report['max_open']} at once",
        ]
        for s in report["sessions"]:
            if s["opened_s"] is None:
                lines.append(f"  #{s['index']:<3} {s['outcome']}: {s['error'] or ''}".rstrip())
                continue
            closed = f", closed at {s['closed_s']:.1f} s" if s["closed_s"] is not None else ""
            lines.append(
                f"  #{s['index']:<3} asked at {s['started_s']:.1f} s, open after "
                f"{_seconds(s['open_latency_s'])} on {s['worker']}{closed}"
            )
    else:
        t = report["throughput"]
        statuses = ", ".join(f"{k}: {v}" for k, v in report["by_status"].items()) or "none"
        lines += [
            f"requests     {c['requested']} asked: {c['sent']} sent, {c['ok']} ok, "
            f"{c['failed']} failed, {c['cancelled']} cancelled, {c['not_sent']} not sent",
            f"by status    {statuses}",
            f"latency      {_dist(report['latency_s'])}",
            f"first byte   {_dist(report['ttfb_s'])}",
            f"throughput   {t['requests_per_s']:.2f} requests/s, "
            f"{t['workload_per_s']:.1f} workload/s",
        ]
        r = report["retries"]
        if r["retried"]:
            lines.append(
                f"re-routed    {r['retried']} requests (at most {r['max_attempts']} attempts)"
            )
        errors = [q for q in report["requests"] if q["error"]]
        if errors:
            lines.append(f"first error  #{errors[0]['index']}: {errors[0]['error']}")
    lines += _workers_lines(report["workers"])
    return "\n".join(lines) + "\n"
