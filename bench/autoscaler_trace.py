"""Benchmark: vespid's scaling policy against baselines on a real LLM request trace.

It runs the product's simulator (``vespid.simulate``, docs/simulate.md) on
``shared/traces/AzureLLMInferenceTrace_code.csv`` (beside the checkout; ``--trace`` reads
another), with every constant at its default (8 streams a worker, 30 s cold start, a
decision every 0.5 s; vespid's scaling parameters at their defaults but max_workers 32):
vespid's ``decide()``, Knative's KPA, and the cheapest fixed pool whose p99 queue wait is
within ``--p99-s`` (found by bisection over pool sizes). It prints the table and
vespid's cost against that pool's. Numbers, not a test: nothing here asserts a speed.

Usage: ``python bench/autoscaler_trace.py [--speed 1] [--limit N] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from vespid.control.policy import ScalingConfig
from vespid.simulate import (
    Arrival,
    FixedPool,
    KnativeKPA,
    Result,
    VespidPolicy,
    WorkerModel,
    percentile,
    read_trace,
    simulate,
)
from vespid.simulate.report import render_table

TRACE: Final = (
    Path(__file__).resolve().parents[2] / "shared" / "traces" / "AzureLLMInferenceTrace_code.csv"
)
TICK_S: Final = 0.5  # the control plane's scale_interval_s
MAX_WORKERS: Final = 32


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
    model = WorkerModel()
    results = [
        simulate(arrivals, model, VespidPolicy(ScalingConfig(max_workers=MAX_WORKERS)), TICK_S),
        simulate(arrivals, model, KnativeKPA(model.streams, MAX_WORKERS, TICK_S), TICK_S),
    ]
    pool = cheapest_pool(lambda n: simulate(arrivals, model, FixedPool(n), TICK_S), p99_s,
                         MAX_WORKERS)  # fmt: skip
    return results + ([pool] if pool is not None else [])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trace", type=Path, default=TRACE, help="default: %(default)s")
    parser.add_argument("--speed", type=float, default=1.0, help="divide the trace's times")
    parser.add_argument("--limit", type=int, default=0, help="the first N requests (0: all)")
    parser.add_argument("--p99-s", type=float, default=10.0, help="the fixed pool's p99 bound")
    parser.add_argument("--json", type=Path, help="write every policy's figures here")
    args = parser.parse_args(argv)
    if not args.trace.is_file():
        parser.error(f"--trace: no such file {args.trace}; pass the CSV's path")
    arrivals = read_trace(args.trace, speed=args.speed, limit=args.limit)
    if not arrivals:
        print(f"{args.trace}: no requests", file=sys.stderr)
        return 1
    results = run_all(arrivals, args.p99_s)
    print(f"trace {args.trace.name}: {len(arrivals)} requests over {arrivals[-1].at_s:.0f} s "
          f"(speed {args.speed:g})")  # fmt: skip
    print(render_table(results))
    if len(results) == 3:
        ratio = results[0].worker_seconds / results[2].worker_seconds
        print(f"vespid / cheapest fixed pool with p99 <= {args.p99_s:g} s "
              f"({results[2].policy}) worker-seconds: {ratio:.2f}")  # fmt: skip
    else:
        print(f"no fixed pool of up to {MAX_WORKERS} workers meets p99 <= {args.p99_s:g} s")
    if args.json:
        summaries = [r.summary() for r in results]
        args.json.write_text(json.dumps({"trace": str(args.trace), "policies": summaries},
                                        indent=2) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
