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
    RayServe,
    VastLike,
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


def test_vespid_sees_load_reports_as_old_as_report_s() -> None:
    """Between two reports the view keeps the reported load plus what was routed since:
    a stream that finished is still seen until the next report."""
    model = WorkerModel(report_s=1.0)
    fleet = SimFleet(model)
    policy = VespidPolicy(ScalingConfig())
    worker = fleet.start(0.0, ready=True)
    fleet.queue.append(Arrival(0.0, 0, 5))
    fleet.dispatch(0.0)
    assert policy.snapshot(0.0, fleet).workers[0].cur_load == 5.0  # reported now
    fleet.advance(0.0, 0.5)  # 5 tokens at ~40/s: done
    assert not worker.streams
    stale = policy.snapshot(0.5, fleet).workers[0]
    assert (stale.cur_load, stale.in_flight) == (5.0, 1)  # the report is 0.5 s old
    fresh = policy.snapshot(1.0, fleet).workers[0]
    assert (fresh.cur_load, fresh.in_flight) == (0.0, 0)


def test_vast_like_refills_its_pool_after_a_wake() -> None:
    """Its five cold workers start parked; a burst wakes some, and the pool's target (at
    least cold_workers, 2.5 x active) starts new workers to refill it: billed loads."""
    arrivals = [Arrival(0.05 * i, 0, 100) for i in range(200)]  # 20/s for 10 s
    result = simulate(arrivals, WorkerModel(cold_start_s=2), VastLike(12), 0.5)
    assert result.wakes >= 1
    assert result.cold_starts >= 1
    assert result.unserved == 0
    assert result.max_workers <= 12


def test_ray_serve_waits_its_upscale_delay() -> None:
    """From zero one replica starts at once; more only after 30 s of wanting more."""
    arrivals = [Arrival(0.1 * i, 0, 400) for i in range(600)]  # 10/s for 60 s
    policy = RayServe(8, 10, 0.5)
    result = simulate(arrivals, WorkerModel(cold_start_s=2), policy, 0.5)
    first_more = next(s.t_s for s in result.timeline if s.starting + s.idle + s.busy > 1)
    assert first_more >= 30.0
    assert result.max_workers > 1
    assert result.unserved == 0
