"""``vespid simulate``: replay a load through scaling policies on simulated workers."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from vespid.control.policy import ScalingConfig
from vespid.errors import ConfigError, RequestInvalid
from vespid.simulate import (
    FixedPool,
    KnativeKPA,
    LoadShape,
    LoadSpec,
    Policy,
    RayServe,
    VastLike,
    VespidPolicy,
    WorkerModel,
    generate,
    read_trace,
    simulate,
)
from vespid.simulate.load import Arrival
from vespid.simulate.report import render_table, to_json, write_svg

__all__ = ["simulate_command"]

EPILOG = """\b
Examples:
  vespid simulate --load bursts --rate 2 --duration-s 1800 --fixed 4
  vespid simulate --trace trace.csv --set target_queue_time=5 --svg out.svg
"""
POLICIES = ("vespid", "fixed", "vast", "ray", "kpa")
SIM_MAX_WORKERS = 32  # the simulated endpoint's max_workers unless --set changes it


def _positive() -> click.FloatRange:
    return click.FloatRange(min=0, min_open=True)


def _scaling(pairs: tuple[str, ...]) -> ScalingConfig:
    """``ScalingConfig`` with max_workers 32 and each ``name=value`` of ``--set``."""
    values: dict[str, Any] = {"max_workers": SIM_MAX_WORKERS}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or name not in ScalingConfig.model_fields:
            known = ", ".join(ScalingConfig.model_fields)
            raise click.BadParameter(f"{pair!r}: use NAME=VALUE, NAME one of {known}")
        values[name] = value
    try:
        return ScalingConfig.model_validate(values)
    except ValidationError as exc:
        raise click.BadParameter(RequestInvalid.from_validation(exc, "--set").message) from None


def _load(trace: Path | None, spec: LoadSpec, speed: float, limit: int) -> list[Arrival]:
    if trace is not None:
        return read_trace(trace, speed=speed, limit=limit)
    return generate(spec)


def _policies(names: tuple[str, ...], params: ScalingConfig, fixed: tuple[int, ...],
              model: WorkerModel, opts: dict[str, Any]) -> list[Policy]:  # fmt: skip
    chosen: list[Policy] = []
    most, tick_s = params.max_workers, opts["tick_s"]
    for name in names or POLICIES:
        if name == "vespid":
            chosen.append(VespidPolicy(params))
        elif name == "vast":
            chosen.append(VastLike(most))
        elif name == "ray":
            chosen.append(RayServe(model.streams, most, tick_s))
        elif name == "kpa":
            chosen.append(KnativeKPA(model.streams, most, tick_s))
        else:
            chosen.extend(FixedPool(n) for n in fixed)
    return chosen


@click.command("simulate", epilog=EPILOG)
@click.option(
    "--trace",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A CSV of arrivals (TIMESTAMP, ContextTokens, GeneratedTokens).",
)
@click.option(
    "--speed",
    type=_positive(),
    default=1.0,
    show_default=True,
    help="Divide the trace's times by this.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=0,
    help="Replay only the trace's first N requests (0: all).",
)
@click.option(
    "--load",
    "shape",
    type=click.Choice([s.value for s in LoadShape]),
    default="poisson",
    show_default=True,
    help="Generated load, without --trace.",
)
@click.option(
    "--rate",
    type=_positive(),
    default=1.0,
    show_default=True,
    help="Requests/s: the mean (poisson) or the peak (diurnal, bursts).",
)
@click.option("--duration-s", type=_positive(), default=3600.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--mean-prompt",
    type=_positive(),
    default=1000.0,
    show_default=True,
    help="Mean prompt tokens of a generated request.",
)
@click.option(
    "--mean-output",
    type=_positive(),
    default=200.0,
    show_default=True,
    help="Mean output tokens of a generated request.",
)
@click.option(
    "--period-s",
    type=_positive(),
    default=600.0,
    show_default=True,
    help="diurnal: seconds of one cycle.",
)
@click.option(
    "--on-s",
    type=_positive(),
    default=60.0,
    show_default=True,
    help="bursts: seconds at the full rate.",
)
@click.option(
    "--off-s",
    type=_positive(),
    default=240.0,
    show_default=True,
    help="bursts: seconds at --low x rate.",
)
@click.option(
    "--low",
    type=click.FloatRange(0, 1),
    default=0.1,
    show_default=True,
    help="diurnal, bursts: the trough as a fraction of the rate.",
)
@click.option(
    "--prefill-tps",
    type=_positive(),
    default=5000.0,
    show_default=True,
    help="Prompt tokens/s a worker prefills per request.",
)
@click.option(
    "--decode-tps",
    type=_positive(),
    default=40.0,
    show_default=True,
    help="Output tokens/s of a stream decoding alone.",
)
@click.option(
    "--decode-slowdown",
    type=click.FloatRange(min=0),
    default=0.05,
    show_default=True,
    help="Per-stream slowdown for each other stream.",
)
@click.option(
    "--streams",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Streams a worker serves at once.",
)
@click.option("--cold-start-s", type=click.FloatRange(min=0), default=30.0, show_default=True)
@click.option(
    "--wake-s",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="Seconds from waking a parked worker until it is READY.",
)
@click.option(
    "--report-s",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Seconds between a worker's load reports, which the router and policies see.",
)
@click.option(
    "--tick-s",
    type=_positive(),
    default=0.5,
    show_default=True,
    help="Seconds between scaling decisions (the control plane's scale_interval_s).",
)
@click.option(
    "--policy",
    "names",
    multiple=True,
    type=click.Choice(POLICIES),
    help="Policies to run (repeat) [default: all].",
)
@click.option(
    "--fixed",
    type=click.IntRange(min=0),
    multiple=True,
    default=(4,),
    show_default=True,
    help="Size of a fixed pool (repeat for several).",
)
@click.option(
    "--set",
    "pairs",
    multiple=True,
    metavar="NAME=VALUE",
    help="A scaling parameter of vespid's policy (repeat); max_workers is 32 here.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the setup and every policy's figures here.",
)
@click.option(
    "--svg",
    "svg_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the timeline chart here.",
)
def simulate_command(**opts: Any) -> None:
    """Replay a trace or a generated load through vespid's scaling policy and baselines,
    on simulated workers; print each policy's cost and queue waits."""
    params = _scaling(opts["pairs"])
    model = WorkerModel(opts["prefill_tps"], opts["decode_tps"], opts["decode_slowdown"],
                        opts["streams"], opts["cold_start_s"], opts["wake_s"],
                        opts["report_s"])  # fmt: skip
    spec = LoadSpec(
        LoadShape(opts["shape"]), opts["rate"], opts["duration_s"], opts["seed"],
        opts["mean_prompt"], opts["mean_output"], opts["period_s"], opts["on_s"],
        opts["off_s"], opts["low"],
    )  # fmt: skip
    try:
        arrivals = _load(opts["trace"], spec, opts["speed"], opts["limit"])
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    policies = _policies(opts["names"], params, opts["fixed"], model, opts)
    results = [simulate(arrivals, model, p, opts["tick_s"], max_queue_time=params.max_queue_time)
               for p in policies]  # fmt: skip
    span = arrivals[-1].at_s if arrivals else 0.0
    source = str(opts["trace"]) if opts["trace"] else f"{spec.shape.value} (seed {spec.seed})"
    click.echo(f"load {source}: {len(arrivals)} requests over {math.ceil(span)} s; "
               f"worker perf {model.perf:.0f} output tokens/s")  # fmt: skip
    click.echo(render_table(results))
    if opts["json_path"]:
        setup = {"load": source, "requests": len(arrivals), "model": asdict(model),
                 "tick_s": opts["tick_s"],
                 "scaling": params.model_dump(mode="json")}  # fmt: skip
        opts["json_path"].write_text(json.dumps(to_json(results, setup), indent=2) + "\n")
    if opts["svg_path"] and results:
        write_svg(results, opts["svg_path"])
