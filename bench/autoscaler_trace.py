"""Benchmark: vespid's scaling policy against baselines, on real traces and generated loads.

It runs the product's simulator (``vespid.simulate``, docs/simulate.md) with every
constant at its default (8 streams a worker, 30 s cold start, 5 s wake, load reports 1 s
old, a decision every 0.5 s; vespid's scaling parameters at their defaults but
max_workers 32) on each load: the Azure LLM code trace (``shared/traces/`` beside the
checkout), the conversation trace (``--held-out``, by default beside it; held out: the
defaults were never tuned on it), and three generated shapes (steady Poisson, a diurnal
ramp, on/off bursts).
For each it runs vespid's ``decide()``, the Vast-like policy, Ray Serve's, Knative's KPA,
and the cheapest fixed pool whose p99 queue wait is within ``--p99-s`` (found by
bisection over pool sizes, routed at 5 s and at 30 s: the cheaper), prints the table,
and vespid's active worker-seconds against that pool's. Numbers, not a test: nothing here
asserts a speed.

Usage: ``python bench/autoscaler_trace.py [--only NAME] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from vespid.control.policy import ScalingConfig
from vespid.simulate import (
    Arrival,
    FixedPool,
    KnativeKPA,
    LoadShape,
    LoadSpec,
    Policy,
    RayServe,
    Result,
    VastLike,
    VespidPolicy,
    WorkerModel,
    generate,
    percentile,
    read_trace,
    simulate,
)
from vespid.simulate.report import render_table

TRACES: Final = Path(__file__).resolve().parents[2] / "shared" / "traces"
TICK_S: Final = 0.5  # the control plane's scale_interval_s
MAX_WORKERS: Final = 32
HOUR_S: Final = 3600.0
# The routing limits (max_queue_time, s) a fixed pool is tried with: vespid's default and
# the old one; each load's pool is the cheapest over both.
POOL_ROUTING: Final = (ScalingConfig().max_queue_time, 30.0)
GENERATED: Final = {
    "poisson": LoadSpec(LoadShape.POISSON, 2.0, HOUR_S),
    "diurnal": LoadSpec(LoadShape.DIURNAL, 3.0, HOUR_S, period_s=1800.0),
    "bursts": LoadSpec(LoadShape.BURSTS, 3.0, HOUR_S, on_s=60.0, off_s=240.0),
}


def cheapest_pool(run: Callable[[int], Result], p99_s: float, most: int) -> Result | None:
    """The smallest fixed pool (1 to ``most``) with p99 wait within ``p99_s``: a bigger
    pool never waits longer, so bisection finds it."""
    lo, hi, best = 1, most, None
    while lo <= hi:
        mid = (lo + hi) // 2
        result = run(mid)
        if percentile(result.waits_s, 0.99) <= p99_s:
            best, hi = result, mid - 1
        else:
            lo = mid + 1
    return best


def run_all(arrivals: Sequence[Arrival], p99_s: float) -> list[Result]:
    """vespid, the baselines, and the cheapest fixed pool within ``p99_s`` (if any), last."""
    model = WorkerModel()
    policies: list[Policy] = [
        VespidPolicy(ScalingConfig(max_workers=MAX_WORKERS)),
        VastLike(MAX_WORKERS),
        RayServe(model.streams, MAX_WORKERS, TICK_S),
        KnativeKPA(model.streams, MAX_WORKERS, TICK_S),
    ]
    results = [simulate(arrivals, model, p, TICK_S) for p in policies]
    pool = best_routed_pool(arrivals, model, p99_s)
    return results + ([pool] if pool is not None else [])


def best_routed_pool(
    arrivals: Sequence[Arrival], model: WorkerModel, p99_s: float
) -> Result | None:
    """The cheapest fixed pool within ``p99_s`` over the routing limits ``POOL_ROUTING``
    (a pool is routed at its own best ``max_queue_time``), named with its limit: "fixed 3
    at 30 s"."""
    best: Result | None = None
    for limit in POOL_ROUTING:

        def run(n: int, limit: float = limit) -> Result:
            return simulate(arrivals, model, FixedPool(n), TICK_S, max_queue_time=limit)

        pool = cheapest_pool(run, p99_s, MAX_WORKERS)
        if pool is not None and (best is None or pool.worker_seconds < best.worker_seconds):
            best = replace(pool, policy=f"{pool.policy} at {limit:g} s")
    return best


def loads(only: str | None, held_out: Path) -> dict[str, list[Arrival]]:
    """Every load that is here, by name."""
    found: dict[str, list[Arrival]] = {}
    for name, path in (("code", TRACES / "AzureLLMInferenceTrace_code.csv"), ("conv", held_out)):
        if only in (None, name):
            if path.is_file():
                found[name] = read_trace(path)
            else:
                print(f"{name}: no {path}; skipped", file=sys.stderr)
    for name, spec in GENERATED.items():
        if only in (None, name):
            found[name] = generate(spec)
    return found


def verdict(results: list[Result], p99_s: float) -> str:
    """vespid's active worker-seconds against the cheapest fixed pool's, and whether it
    beats every baseline that meets the p99 bound."""
    vespid = results[0]
    meets = percentile(vespid.waits_s, 0.99) <= p99_s
    text = f"vespid p99 {'<=' if meets else '>'} {p99_s:g} s"
    pool = results[-1] if results[-1].policy.startswith("fixed") else None
    if pool is not None:
        ratio = vespid.worker_seconds / pool.worker_seconds
        name, _, routing = pool.policy.partition(" at ")
        text += f"; active worker-s / cheapest fixed pool ({name}): {ratio:.2f}"
        text += f" (that pool routed at {routing})" if routing else ""
    rivals = [r for r in results[1:] if percentile(r.waits_s, 0.99) <= p99_s]
    beaten = all(vespid.worker_seconds < r.worker_seconds for r in rivals)
    return text + f"; beats every baseline that meets it: {'yes' if beaten else 'no'}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", help="one load: code, conv, poisson, diurnal or bursts")
    parser.add_argument("--held-out", type=Path, default=TRACES / "AzureLLMInferenceTrace_conv.csv",
                        help="the held-out trace (default: %(default)s)")  # fmt: skip
    parser.add_argument("--p99-s", type=float, default=10.0, help="the p99 bound")
    parser.add_argument("--json", type=Path, help="write every policy's figures here")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {}
    for name, arrivals in loads(args.only, args.held_out).items():
        results = run_all(arrivals, args.p99_s)
        print(f"\n{name}: {len(arrivals)} requests over {arrivals[-1].at_s:.0f} s")
        print(render_table(results))
        print(verdict(results, args.p99_s))
        report[name] = [r.summary() for r in results]
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
