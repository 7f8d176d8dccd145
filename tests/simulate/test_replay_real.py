"""The simulator checked against the real thing: a short slice of the code trace, time
compressed, replayed through the client SDK against a real control plane with real worker
processes in front of the vLLM stand-in (decode rate, streams, start-up and wake times of
the simulator's worker model, compressed alike), and ``vespid simulate``'s engine run on
the same slice with the same constants. The active-worker curves and the scaling actions
must agree within the tolerance docs/simulate.md states ("How the simulator is checked").
Without the trace (a clean clone with no ``shared/`` beside it) a generated on/off burst
load stands in for it.
"""

from __future__ import annotations

import asyncio
import bisect
import sys
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest

from tests.control.conftest import MakeControl, admin, http, make_control  # noqa: F401
from tests.worker.conftest import blockbuster, no_leaked_tasks  # noqa: F401
from vespid.client import Client
from vespid.control.app import ControlPlane
from vespid.control.policy import ScalingConfig, WorkerPhase
from vespid.loadtest.replay import ArrivalPayloads, replay_plan
from vespid.loadtest.runner import RequestRun
from vespid.simulate import (
    Arrival,
    LoadShape,
    LoadSpec,
    VespidPolicy,
    WorkerModel,
    generate,
    read_trace,
    simulate,
)

TRACE: Final = Path(__file__).resolve().parents[3] / "shared/traces/AzureLLMInferenceTrace_code.csv"
# The slice: 120 s of the trace from a quiet start into two bursts (718 requests, up to
# 11/s), and the compression that replays it in 60 s.
SLICE_S: Final = (170.0, 290.0)
SPEED: Final = 2.0
# The worker model, in the trace's time: a small LLM worker (4 streams of 20 tokens/s
# each, 70 tokens/s a full batch), so that the slice asks for 0 to 4 workers.
MODEL: Final = WorkerModel(
    prefill_tps=5000, decode_tps=20, decode_slowdown=0.05, streams=8, cold_start_s=10, wake_s=2
)
TICK_S: Final = 0.1  # the control plane's scale_interval_s, and the simulator's tick
# Seconds a worker takes to start besides its model server's load (two Python processes
# importing, the worker's first health poll and report): measured here, ~1 s on 2 cores.
START_OVERHEAD_S: Final = 1.0
SAMPLE_S: Final = 0.25
TOLERANCE: Final = 1  # workers
WITHIN_SHARE: Final = 0.95  # of the samples
# How far the real count of each action may be from the simulator's (docs/simulate.md).
ACTION_MARGINS: Final = {"start": 1, "wake": 1, "park": 1}


def compress(model: WorkerModel, speed: float) -> WorkerModel:
    """The same worker on a clock ``speed`` times faster."""
    return replace(
        model,
        prefill_tps=model.prefill_tps * speed,
        decode_tps=model.decode_tps * speed,
        cold_start_s=model.cold_start_s / speed,
        wake_s=model.wake_s / speed,
    )


def scaling(speed: float) -> ScalingConfig:
    """vespid's defaults with their times compressed, on a fleet of at most 4."""
    d = ScalingConfig()
    return ScalingConfig(
        max_workers=4,
        reservoir_workers=4,
        target_queue_time=d.target_queue_time / speed,
        scale_down_delay=d.scale_down_delay / speed,
        max_queue_time=d.max_queue_time / speed,
        inactivity_timeout=d.inactivity_timeout / speed,
    )


@pytest.fixture
def arrivals() -> list[Arrival]:
    """The trace's slice, compressed; a generated burst load of the same length without it."""
    if TRACE.is_file():
        start, end = SLICE_S
        rows = [a for a in read_trace(TRACE) if start <= a.at_s < end]
        first = rows[0].at_s
        return [replace(a, at_s=(a.at_s - first) / SPEED) for a in rows]
    spec = LoadSpec(LoadShape.BURSTS, rate_per_s=12, duration_s=60, seed=1, mean_prompt=2000,
                    mean_output=28, on_s=10, off_s=20, low=0.1)  # fmt: skip
    return generate(spec)


def endpoint(model: WorkerModel, params: ScalingConfig) -> dict[str, Any]:
    """The endpoint: workers in front of the vLLM stand-in behaving as ``model``."""
    stand_in = [
        sys.executable, "-m", "vespid.testing.vllm", "--port", "{model_port}",
        "--slots", str(model.streams), "--decode-tps", str(model.decode_tps),
        "--decode-slowdown", str(model.decode_slowdown), "--prefill-tps",
        str(model.prefill_tps), "--wake-s", str(model.wake_s),
        "--startup-s", str(max(0.0, model.cold_start_s - START_OVERHEAD_S)),
    ]  # fmt: skip
    env = {
        "HEALTHCHECK_ENDPOINT": "/health",
        "VESPID_MAX_PERF": str(model.perf),
        "VESPID_MAX_CONCURRENCY": str(model.streams),
        "VESPID_SLEEP": "vllm",
        "VESPID_LOG_LEVEL": "warning",
    }
    return {
        "name": "llm",
        "scaling": params.model_dump(mode="json"),
        "template": {"model_command": stand_in, "env": env, "ready_timeout": 60},
    }


@dataclass(frozen=True, slots=True)
class Curve:
    """Active (every phase but PARKED) and parked workers over time, and the actions."""

    times: list[float]
    active: list[int]
    parked: list[int]
    actions: Counter[str]

    def at(self, t: float) -> tuple[int, int]:
        """(active, parked) as last sampled at or before ``t``."""
        i = max(0, bisect.bisect_right(self.times, t) - 1)
        return self.active[i], self.parked[i]


def simulated(arrivals: list[Arrival], model: WorkerModel, params: ScalingConfig) -> Curve:
    policy = VespidPolicy(params, initial_parked=0)
    result = simulate(arrivals, model, policy, TICK_S, max_queue_time=params.max_queue_time)
    times = [s.t_s for s in result.timeline]
    active = [s.starting + s.waking + s.idle + s.busy + s.draining for s in result.timeline]
    parked = [s.parked for s in result.timeline]
    actions: Counter[str] = Counter(start=result.cold_starts, wake=result.wakes)
    for d in policy.decisions:
        actions.update(stop=len(d.stop), park=len(d.park), drain=len(d.drain))
    return Curve(times, active, parked, actions)


_OUT: Final = frozenset({WorkerPhase.PARKED, WorkerPhase.STOPPING, WorkerPhase.ERRORED})


async def watch(control: ControlPlane, curve: Curve, clock: Any, stop: asyncio.Event) -> None:
    """Sample the real fleet every ``SAMPLE_S`` until ``stop``."""
    while not stop.is_set():
        phases = [w.phase for w in control.fleet.of("llm")]
        curve.times.append(clock())
        curve.active.append(sum(p not in _OUT for p in phases))
        curve.parked.append(sum(p is WorkerPhase.PARKED for p in phases))
        try:
            async with asyncio.timeout(SAMPLE_S):
                await stop.wait()
        except TimeoutError:
            pass


def real_actions(control: ControlPlane) -> Counter[str]:
    """The scaling log's actions; a 'wake' of a DRAINING worker (no provider call) is the
    simulator's take-back, not a wake."""
    counted: Counter[str] = Counter()
    for entry in control.scaling_log:
        if entry["action"] != "wake" or entry["provider_s"] is not None:
            counted[entry["action"]] += 1
    return counted


def compare(real: Curve, sim: Curve, until: float) -> tuple[float, str]:
    """The share of real samples whose active count is within ``TOLERANCE`` of the
    simulator's at the same time, and a table of both curves (one row a second)."""
    pairs = [(t, a, sim.at(t)[0]) for t, a in zip(real.times, real.active, strict=True)]
    pairs = [p for p in pairs if p[0] <= until]
    within = sum(abs(a - s) <= TOLERANCE for _, a, s in pairs) / max(1, len(pairs))
    rows = [
        f"{t:5.1f} s  real {real.at(t)[0]} active {real.at(t)[1]} parked   "
        f"sim {sim.at(t)[0]} active {sim.at(t)[1]} parked"
        for t in range(int(until) + 1)
    ]
    return within, "\n".join(rows)


async def test_the_simulator_follows_a_real_control_plane_on_a_trace_slice(
    make_control: MakeControl,  # noqa: F811
    http: aiohttp.ClientSession,  # noqa: F811
    arrivals: list[Arrival],
) -> None:
    model, params = compress(MODEL, SPEED), scaling(SPEED)
    sim = await asyncio.to_thread(simulated, arrivals, model, params)

    control = await make_control()  # scale_interval_s 0.1: TICK_S
    status, ep = await admin(http, control, "POST", "/api/v0/endpoints", endpoint(model, params))
    assert "api_key" in ep, (status, ep)
    run = RequestRun(replay_plan("llm", arrivals, timeout_s=60), ArrivalPayloads(arrivals))
    real = Curve([], [], [], Counter())
    stop = asyncio.Event()
    async with Client(control.url, ep["api_key"], timeout_s=60) as client:
        endpoint_ = await client.get_endpoint("llm")
        watching = asyncio.create_task(watch(control, real, run.now_s, stop))
        try:
            await run.execute(client, sample_workers=False, endpoint=endpoint_)
        finally:
            stop.set()
            await watching
    real.actions.update(real_actions(control))

    outcomes = Counter(r.outcome for r in run.records)
    assert outcomes == {"ok": len(arrivals)}, outcomes
    within, table = compare(real, sim, min(run.elapsed_s, sim.times[-1]))
    ready_after = [w.ready_after_s for w in control.fleet.workers.values() if w.ready_after_s]
    print(f"\n{table}\nwithin ±{TOLERANCE}: {within:.0%}; actions real {dict(real.actions)} "
          f"sim {dict(sim.actions)}; ready after {ready_after}")  # fmt: skip
    assert within >= WITHIN_SHARE, table
    for action, margin in ACTION_MARGINS.items():
        assert abs(real.actions[action] - sim.actions[action]) <= margin, (
            real.actions,
            sim.actions,
        )
