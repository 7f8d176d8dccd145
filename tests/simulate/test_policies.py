"""The policies the simulator runs: vespid's own decide(), fed as the control plane feeds it,
and the baselines."""

from __future__ import annotations

import pytest

from vespid.control import policy as control_policy
from vespid.control.demand import RATE_WINDOW_S
from vespid.control.policy import (
    DEFAULT_PERF,
    Decision,
    PolicyState,
    ScalingConfig,
    ScalingSnapshot,
    WorkerPhase,
)
from vespid.simulate import (
    Arrival,
    KnativeKPA,
    LoadShape,
    LoadSpec,
    VespidPolicy,
    WorkerModel,
    generate,
    simulate,
)
from vespid.simulate import policies as sim_policies
from vespid.simulate.workers import SimFleet


def _load() -> list[Arrival]:
    return generate(LoadSpec(LoadShape.DIURNAL, 3.0, 900.0, seed=7, mean_output=80,
                             period_s=300))  # fmt: skip


def test_the_simulator_runs_the_control_planes_decide(monkeypatch: pytest.MonkeyPatch) -> None:
    assert vars(sim_policies)["decide"] is control_policy.decide
    calls: list[ScalingSnapshot] = []

    def spy(snapshot: ScalingSnapshot, state: PolicyState) -> tuple[Decision, PolicyState]:
        calls.append(snapshot)
        return control_policy.decide(snapshot, state)

    monkeypatch.setattr("vespid.simulate.policies.decide", spy)
    policy = VespidPolicy(ScalingConfig(max_workers=16))
    result = simulate(_load(), WorkerModel(), policy, tick_s=0.5)
    assert len(calls) == len(policy.decisions) == len(result.timeline)
    assert any("scale from zero" in d.reason for d in policy.decisions)


def test_a_scaling_parameter_changes_the_result() -> None:
    def run(params: ScalingConfig) -> dict[str, float | int | str]:
        return simulate(_load(), WorkerModel(), VespidPolicy(params), tick_s=0.5).summary()

    base = run(ScalingConfig(max_workers=16))
    assert run(ScalingConfig(max_workers=16, target_util=0.3)) != base
    assert run(ScalingConfig(max_workers=1))["max_workers"] == 1


def test_the_snapshot_is_built_as_the_control_plane_builds_it() -> None:
    model = WorkerModel()
    fleet = SimFleet(model)
    policy = VespidPolicy(ScalingConfig())
    for at in (1.0, 2.0):
        policy.arrived(Arrival(at, 500, 30))
    fleet.queue.append(Arrival(2.0, 500, 30))
    first = policy.snapshot(3.0, fleet)
    assert first.arrival_rate == 60 / RATE_WINDOW_S  # output tokens over the 30 s window
    assert (first.queued_requests, first.queued_load) == (1, 30.0)
    assert first.default_perf == DEFAULT_PERF  # no worker benchmarked yet
    assert first.last_activity_at == 3.0  # a request waits
    worker = fleet.start(3.0, ready=True)
    fleet.dispatch(3.0)
    view = policy.snapshot(4.0, fleet).workers[0]
    assert (view.worker_id, view.state, view.cur_load, view.in_flight) == (
        worker.worker_id, WorkerPhase.READY, 30.0, 1,
    )  # fmt: skip
    assert view.max_perf == policy.snapshot(4.0, fleet).default_perf == model.perf
    assert policy.snapshot(40.0, fleet).arrival_rate == 0.0  # out of the window


def test_knative_scales_up_for_a_burst() -> None:
    arrivals = [Arrival(0.1 * i, 0, 40) for i in range(100)]  # 10 requests/s for 10 s
    result = simulate(arrivals, WorkerModel(cold_start_s=2), KnativeKPA(8, 10, 0.5), 0.5)
    # 100 requests of 40 tokens at ~30 tokens/s a stream: over 8 in flight at once.
    assert 1 < result.max_workers <= 10
    assert result.unserved == 0
