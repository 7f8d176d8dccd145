"""Replay the Azure LLM code trace through the autoscaling policy, against a simulated fleet.

Each request of ``shared/traces/AzureLLMInferenceTrace_code.csv`` arrives at its
timestamp (offset from the first, divided by ``--speed``) with workload =
ContextTokens + GeneratedTokens (``--workload generated``: GeneratedTokens only).
Nothing runs: ``vespid.control.policy.decide`` is called directly, with no event loop.

* Workers. Each serves its requests one at a time, in arrival order, at ``--perf``
  workload/s, so its queue time is exactly ``cur_load / perf`` (PROTOCOL §6). A new
  worker is READY ``--start-s`` after launch; a cold one ``--cold-start-s`` after it
  is activated.
* Router. A request goes to the routable worker (READY, queue time within
  ``max_queue_time``, as ``policy.is_routable``) that frees up first; with none, it
  waits in the router's queue, first in first out. Nothing is refused with 429.
* Collector. Every ``--tick-s`` of simulated time it builds a ``ScalingSnapshot``:
  arrival rate = workload arrived in the last ``--rate-window-s`` (30 s, as vespid's
  collector) / that window; last activity = last arrival or last tick with work.
* Provider. Applies each decision at once: starts activate cold workers first; a
  stopped READY worker joins the cold pool while it is below ``target_cold``; the
  pool is topped up with new workers that load for ``--start-s`` (billed) and stop.
  The run starts with ``cold_workers`` cold workers and nothing active.

Worker-seconds count active (STARTING or READY) time plus the loading of cold
workers, up to the last request's completion. The comparison is a static fleet sized
for the peak: ceil(peak 60 s arrival rate / (perf x target_util)) workers, all READY
from the start, on the same trace. See docs/autoscaler.md.

Usage: ``python bench/autoscaler_trace.py [--speed 1] [--perf 4000] [--json out.json]``
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final

from pydantic import ValidationError

from vespid.control.policy import (
    Decision,
    PolicyState,
    ScalingConfig,
    ScalingSnapshot,
    WorkerPhase,
    WorkerView,
    decide,
)
from vespid.errors import RequestInvalid

TRACE: Final = (
    Path(__file__).resolve().parents[2] / "shared" / "traces" / "AzureLLMInferenceTrace_code.csv"
)
PEAK_WINDOW_S: Final = 60.0  # the window the static fleet's peak is measured over
TIME_SLACK_S: Final = 1e-9  # float noise forgiven when comparing times
GUARD_S: Final = 24 * 3600.0  # a run stops this long after the last arrival, whatever happens


@dataclass(frozen=True, slots=True)
class Request:
    arrival_s: float
    workload: float


@dataclass(frozen=True, slots=True)
class SimConfig:
    perf: float
    start_s: float
    cold_start_s: float
    tick_s: float
    rate_window_s: float
    params: ScalingConfig


@dataclass(slots=True)
class SimWorker:
    """One simulated worker: a FIFO server at ``perf`` workload/s."""

    worker_id: str
    phase: WorkerPhase
    started_at: float  # when it was launched or activated (billing starts)
    ready_at: float
    loaded_at: float = -math.inf  # a cold worker cannot start before its model is loaded
    benchmarked: bool = False
    free_at: float = 0.0  # when its backlog drains
    finishes: deque[float] = field(default_factory=deque)  # in order, FIFO

    def in_flight(self, now: float) -> int:
        while self.finishes and self.finishes[0] <= now:
            self.finishes.popleft()
        return len(self.finishes)

    def queue_time_s(self, now: float) -> float:
        return max(0.0, self.free_at - now)


@dataclass(slots=True)
class RunStats:
    """What one run measured."""

    label: str
    waits_s: list[float] = field(default_factory=list)
    worker_seconds: float = 0.0
    end_s: float = 0.0
    scale_up_events: int = 0
    scale_down_events: int = 0
    workers_started: int = 0
    activated_from_cold: int = 0
    workers_stopped: int = 0
    max_active: int = 0
    max_cold: int = 0
    decisions: int = 0

    def summary(self) -> dict[str, float | int | str]:
        waits = sorted(self.waits_s)
        p99 = waits[max(0, math.ceil(0.99 * len(waits)) - 1)] if waits else 0.0
        return {
            "label": self.label,
            "requests": len(waits),
            "mean_wait_s": round(sum(waits) / len(waits), 4) if waits else 0.0,
            "p99_wait_s": round(p99, 4),
            "max_wait_s": round(waits[-1], 4) if waits else 0.0,
            "worker_seconds": round(self.worker_seconds, 1),
            "end_s": round(self.end_s, 3),
            "scale_up_events": self.scale_up_events,
            "scale_down_events": self.scale_down_events,
            "workers_started": self.workers_started,
            "activated_from_cold": self.activated_from_cold,
            "workers_stopped": self.workers_stopped,
            "max_active": self.max_active,
            "max_cold": self.max_cold,
            "decisions": self.decisions,
        }


class SimFleet:
    """Workers, the router's queue and the provider, on simulated time."""

    def __init__(self, config: SimConfig, stats: RunStats) -> None:
        self.config = config
        self.stats = stats
        self.live: dict[str, SimWorker] = {}
        self.cold: list[SimWorker] = []
        self.queue: deque[Request] = deque()
        self.clock = 0.0
        self._next_id = 1

    def _new_id(self) -> str:
        worker_id = f"w{self._next_id}"
        self._next_id += 1
        return worker_id

    # -- router ------------------------------------------------------------------

    def _routable(self, worker: SimWorker, now: float) -> bool:
        """``policy.is_routable`` with the FIFO queue time computed exactly."""
        limit = self.config.params.max_queue_time
        return worker.phase is WorkerPhase.READY and worker.queue_time_s(now) <= limit + (
            TIME_SLACK_S
        )

    def _dispatch(self, now: float) -> None:
        while self.queue:
            candidates = [w for w in self.live.values() if self._routable(w, now)]
            if not candidates:
                return
            worker = min(candidates, key=lambda w: (w.free_at, w.worker_id))
            request = self.queue.popleft()
            start = max(now, worker.free_at)
            worker.free_at = start + request.workload / self.config.perf
            worker.finishes.append(worker.free_at)
            self.stats.waits_s.append(start - request.arrival_s)

    def _next_event(self, until: float) -> float | None:
        """The next time in (clock, until] when a worker becomes ready or routable."""
        times = [w.ready_at for w in self.live.values() if w.phase is WorkerPhase.STARTING]
        if self.queue:
            limit = self.config.params.max_queue_time
            times += [w.free_at - limit for w in self.live.values() if w.phase is WorkerPhase.READY]
        due = [t for t in times if self.clock < t <= until]
        return min(due) if due else None

    def advance(self, until: float) -> None:
        """Run the fleet to ``until``: workers become ready, the queue drains into them."""
        self._dispatch(self.clock)
        while (event := self._next_event(until)) is not None:
            self.clock = event
            for worker in self.live.values():
                if worker.phase is WorkerPhase.STARTING and worker.ready_at <= event:
                    worker.phase, worker.benchmarked = WorkerPhase.READY, True
            self._dispatch(event)
        self.clock = max(self.clock, until)
        self._dispatch(self.clock)

    def submit(self, request: Request) -> None:
        self.advance(request.arrival_s)
        self.queue.append(request)
        self._dispatch(self.clock)

    def busy(self, now: float) -> bool:
        return bool(self.queue) or any(w.free_at > now for w in self.live.values())

    # -- collector ---------------------------------------------------------------

    def snapshot(
        self, now: float, arrival_rate: float, last_activity_at: float | None
    ) -> ScalingSnapshot:
        perf = self.config.perf
        views = [
            WorkerView(
                worker_id=w.worker_id,
                state=w.phase,
                cur_load=w.queue_time_s(now) * perf,
                max_perf=perf if w.benchmarked else None,
                in_flight=w.in_flight(now),
                started_at=w.started_at,
            )
            for w in self.live.values()
        ]
        views += [WorkerView(w.worker_id, WorkerPhase.COLD, max_perf=perf) for w in self.cold]
        return ScalingSnapshot(
            now=now,
            params=self.config.params,
            default_perf=perf,
            workers=tuple(views),
            queued_load=sum(r.workload for r in self.queue),
            queued_requests=len(self.queue),
            arrival_rate=arrival_rate,
            last_activity_at=last_activity_at,
        )

    # -- provider ----------------------------------------------------------------

    def add_ready(self, count: int) -> None:
        """Workers READY from the start (the static fleet)."""
        for _ in range(count):
            worker_id = self._new_id()
            self.live[worker_id] = SimWorker(
                worker_id, WorkerPhase.READY, 0.0, 0.0, benchmarked=True
            )
        self.stats.max_active = max(self.stats.max_active, len(self.live))

    def add_cold(self, count: int, now: float, *, billed: bool) -> None:
        for _ in range(count):
            worker = SimWorker(self._new_id(), WorkerPhase.COLD, now, now, benchmarked=True)
            worker.loaded_at = now + self.config.start_s if billed else -math.inf
            if billed:
                self.stats.worker_seconds += self.config.start_s
            self.cold.append(worker)

    def _stop(self, worker_id: str, now: float, target_cold: int) -> None:
        worker = self.live.pop(worker_id)
        if worker.in_flight(now) or worker.free_at > now + TIME_SLACK_S:
            raise AssertionError(f"the policy stopped busy worker {worker_id} at {now}")
        self.stats.worker_seconds += now - worker.started_at
        self.stats.workers_stopped += 1
        if worker.benchmarked and len(self.cold) < target_cold:
            worker.phase = WorkerPhase.COLD
            worker.loaded_at = now
            self.cold.append(worker)

    def _start(self, now: float) -> None:
        if self.cold:
            worker = self.cold.pop()
            worker.phase, worker.started_at = WorkerPhase.STARTING, now
            worker.ready_at = max(now, worker.loaded_at) + self.config.cold_start_s
            worker.free_at = 0.0
            self.stats.activated_from_cold += 1
        else:
            worker_id = self._new_id()
            worker = SimWorker(worker_id, WorkerPhase.STARTING, now, now + self.config.start_s)
            self.stats.workers_started += 1
        self.live[worker.worker_id] = worker

    def apply(self, decision: Decision, now: float) -> None:
        self.stats.decisions += 1
        for worker_id in decision.stop:
            self._stop(worker_id, now, decision.target_cold)
        for _ in range(decision.start):
            self._start(now)
        del self.cold[decision.target_cold :]
        self.add_cold(decision.target_cold - len(self.cold), now, billed=True)
        self.stats.scale_up_events += decision.start > 0
        self.stats.scale_down_events += bool(decision.stop)
        self.stats.max_active = max(self.stats.max_active, len(self.live))
        self.stats.max_cold = max(self.stats.max_cold, len(self.cold))

    def close(self, end: float) -> None:
        """Bill the workers still active at ``end``."""
        self.stats.end_s = end
        self.stats.worker_seconds += sum(max(0.0, end - w.started_at) for w in self.live.values())


class ArrivalRate:
    """Workload arrived in the last ``window_s``, per second."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._events: deque[tuple[float, float]] = deque()
        self._sum = 0.0

    def add(self, at: float, workload: float) -> None:
        self._events.append((at, workload))
        self._sum += workload

    def rate(self, now: float) -> float:
        while self._events and self._events[0][0] <= now - self.window_s:
            self._sum -= self._events.popleft()[1]
        return max(0.0, self._sum) / self.window_s


# -- runs ------------------------------------------------------------------------------


def run_autoscaled(requests: Sequence[Request], config: SimConfig) -> RunStats:
    stats = RunStats("autoscaled")
    fleet = SimFleet(config, stats)
    fleet.add_cold(config.params.cold_workers, 0.0, billed=False)
    rates = ArrivalRate(config.rate_window_s)
    state = PolicyState()
    last_activity: float | None = None
    guard = requests[-1].arrival_s + GUARD_S
    i, tick = 0, 0
    while True:
        tick += 1
        now = tick * config.tick_s  # a multiple, never a running sum: no drift
        while i < len(requests) and requests[i].arrival_s <= now:
            request = requests[i]
            fleet.submit(request)
            rates.add(request.arrival_s, request.workload)
            last_activity = request.arrival_s
            i += 1
        fleet.advance(now)
        if fleet.busy(now):
            last_activity = now
        elif i == len(requests):
            break  # every request served: what follows is the trace's end, not its load
        if now > guard:
            break
        decision, state = decide(fleet.snapshot(now, rates.rate(now), last_activity), state)
        fleet.apply(decision, now)
    fleet.close(max((w.free_at for w in fleet.live.values()), default=now))
    return stats


def peak_rate(requests: Sequence[Request], window_s: float = PEAK_WINDOW_S) -> float:
    """Most workload arriving in any window of ``window_s``, per second."""
    best, total, lo = 0.0, 0.0, 0
    for request in requests:
        total += request.workload
        while requests[lo].arrival_s <= request.arrival_s - window_s:
            total -= requests[lo].workload
            lo += 1
        best = max(best, total)
    return best / window_s


def run_static(requests: Sequence[Request], config: SimConfig, workers: int) -> RunStats:
    stats = RunStats(f"static ({workers})")
    fleet = SimFleet(config, stats)
    fleet.add_ready(workers)
    for request in requests:
        fleet.submit(request)
    fleet.advance(requests[-1].arrival_s)
    end = max(max((w.free_at for w in fleet.live.values()), default=0.0), fleet.clock)
    fleet.close(end)
    return stats


# -- input and output -------------------------------------------------------------------


def _parse_time(text: str) -> datetime:
    """'2023-11-16 18:17:03.9799600': seven fraction digits, one more than Python reads."""
    head, _, fraction = text.strip().partition(".")
    return datetime.fromisoformat(f"{head}.{(fraction + '000000')[:6]}")


def load_trace(path: Path, *, speed: float, generated_only: bool, limit: int) -> list[Request]:
    requests: list[Request] = []
    start: datetime | None = None
    with path.open(newline="") as file:
        for row in csv.DictReader(file):
            at = _parse_time(row["TIMESTAMP"])
            start = at if start is None else start
            generated = float(row["GeneratedTokens"])
            workload = generated if generated_only else float(row["ContextTokens"]) + generated
            requests.append(Request((at - start).total_seconds() / speed, workload))
            if limit and len(requests) >= limit:
                break
    requests.sort(key=lambda r: r.arrival_s)
    return requests


def _positive(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0 (got {text!r})")
    return value


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, ScalingConfig]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add = parser.add_argument
    add("--trace", type=Path, default=TRACE, help="trace CSV (default: %(default)s)")
    add("--speed", type=_positive, default=1.0, help="compress time by this factor (default 1)")
    add(
        "--workload",
        choices=["total", "generated"],
        default="total",
        help="total: ContextTokens + GeneratedTokens (default); generated: GeneratedTokens",
    )
    add("--limit", type=int, default=0, help="replay only the first N requests (0: all)")
    add("--perf", type=_positive, default=4000.0, help="workload/s per worker (default 4000)")
    add("--start-s", type=float, default=60.0, help="new worker start-up (default 60 s)")
    add("--cold-start-s", type=float, default=10.0, help="cold worker start-up (default 10 s)")
    add("--tick-s", type=_positive, default=1.0, help="autoscaler period (default 1 s)")
    add(
        "--rate-window-s",
        type=_positive,
        default=30.0,
        help="arrival-rate window of the collector (default 30 s)",
    )
    add("--json", type=Path, help="write every number here")
    defaults = ScalingConfig()
    add("--min-load", type=float, default=defaults.min_load)
    add("--target-util", type=float, default=defaults.target_util)
    add("--cold-mult", type=float, default=defaults.cold_mult)
    add("--cold-workers", type=int, default=defaults.cold_workers)
    add("--max-workers", type=int, default=32, help="(default 32; the policy's own is 4)")
    add("--inactivity-timeout-s", type=float, default=defaults.inactivity_timeout)
    add("--max-queue-time-s", type=float, default=defaults.max_queue_time)
    add("--target-queue-time-s", type=float, default=defaults.target_queue_time)
    add("--scale-down-delay-s", type=float, default=defaults.scale_down_delay)
    args = parser.parse_args(argv)
    try:
        params = ScalingConfig(
            min_load=args.min_load,
            target_util=args.target_util,
            cold_mult=args.cold_mult,
            cold_workers=args.cold_workers,
            max_workers=args.max_workers,
            inactivity_timeout=args.inactivity_timeout_s,
            max_queue_time=args.max_queue_time_s,
            target_queue_time=args.target_queue_time_s,
            scale_down_delay=args.scale_down_delay_s,
        )
    except ValidationError as exc:
        parser.error(RequestInvalid.from_validation(exc, "scaling parameters").message)
    if args.start_s < 0 or args.cold_start_s < 0 or args.limit < 0:
        parser.error("--start-s, --cold-start-s and --limit must be >= 0")
    if not args.trace.is_file():
        parser.error(f"--trace: no such file {args.trace}; pass the CSV's path")
    return args, params


def _row(stats: RunStats) -> str:
    s = stats.summary()
    return (
        f"{s['label']:<14} {s['worker_seconds']:>11.0f} {s['mean_wait_s']:>10.3f} "
        f"{s['p99_wait_s']:>10.3f} {s['max_wait_s']:>10.3f} {s['max_active']:>11}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args, params = parse_args(argv)
    began = time.perf_counter()
    requests = load_trace(
        args.trace, speed=args.speed, generated_only=args.workload == "generated", limit=args.limit
    )
    if not requests:
        print(f"{args.trace}: no requests", file=sys.stderr)
        return 1
    config = SimConfig(
        args.perf, args.start_s, args.cold_start_s, args.tick_s, args.rate_window_s, params
    )
    auto = run_autoscaled(requests, config)
    peak = peak_rate(requests)
    static_workers = max(1, math.ceil(peak / (args.perf * params.target_util) - 1e-9))
    static = run_static(requests, config, static_workers)
    elapsed = time.perf_counter() - began

    span = requests[-1].arrival_s
    total = sum(r.workload for r in requests)
    kind = "GeneratedTokens" if args.workload == "generated" else "ContextTokens + GeneratedTokens"
    print(
        f"trace {args.trace.name}: {len(requests)} requests over {span:.0f} s "
        f"(speed {args.speed:g}), workload = {kind}"
    )
    print(
        f"mean {total / span:.0f} workload/s, peak {peak:.0f} workload/s over {PEAK_WINDOW_S:g} s; "
        f"perf {args.perf:g}/worker, start {args.start_s:g} s (cold {args.cold_start_s:g} s), "
        f"tick {args.tick_s:g} s"
    )
    print(
        f"{'':<14} {'worker-s':>11} {'mean wait':>10} {'p99 wait':>10} {'max wait':>10} "
        f"{'max workers':>11}"
    )
    print(_row(auto))
    print(_row(static))
    print(
        f"autoscaled: {auto.scale_up_events} scale-up and {auto.scale_down_events} scale-down "
        f"events, {auto.workers_started} workers launched, {auto.activated_from_cold} "
        f"activated from cold, {auto.workers_stopped} stopped, most cold {auto.max_cold}"
    )
    ratio = auto.worker_seconds / static.worker_seconds
    print(f"autoscaled / static worker-seconds: {ratio:.2f} ({elapsed:.1f} s to run)")  # fmt: skip
    if args.json:
        out = {
            "trace": str(args.trace),
            "workload": args.workload,
            "speed": args.speed,
            "requests": len(requests),
            "span_s": span,
            "mean_rate": total / span,
            "peak_rate": peak,
            "perf": args.perf,
            "start_s": args.start_s,
            "cold_start_s": args.cold_start_s,
            "tick_s": args.tick_s,
            "rate_window_s": args.rate_window_s,
            "params": params.model_dump(),
            "autoscaled": auto.summary(),
            "static": static.summary(),
            "worker_seconds_ratio": ratio,
            "run_s": elapsed,
        }
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
