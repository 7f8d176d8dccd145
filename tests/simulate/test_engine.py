"""The simulator's engine: hand-computed waits, conservation, determinism, fixed pools."""

from __future__ import annotations

import pytest

from vespid.control.policy import ScalingConfig
from vespid.simulate import (
    Arrival,
    FixedPool,
    KnativeKPA,
    LoadShape,
    LoadSpec,
    VespidPolicy,
    WorkerModel,
    generate,
    percentile,
    simulate,
)

# One stream a worker, 100 prompt tokens/s, 10 output tokens/s, no batching effect.
ONE_STREAM = WorkerModel(prefill_tps=100, decode_tps=10, decode_slowdown=0, streams=1,
                         cold_start_s=5)  # fmt: skip


def test_a_tiny_scenario_waits_as_computed_by_hand() -> None:
    # A: 1 s prefill + 1 s decode, ends at 2. B arrives at 0.5, starts at 2 (waits 1.5),
    # 1 s + 2 s, ends at 5. C arrives at 1, starts at 5 (waits 4), 2 s + 1 s, ends at 8.
    arrivals = [Arrival(0.0, 100, 10), Arrival(0.5, 100, 20), Arrival(1.0, 200, 10)]
    result = simulate(arrivals, ONE_STREAM, FixedPool(1), tick_s=0.5)
    assert result.waits_s == pytest.approx([0.0, 1.5, 4.0])
    assert result.end_s == pytest.approx(8.0)
    assert result.worker_seconds == pytest.approx(8.0)
    assert (result.served, result.unserved, result.cold_starts) == (3, 0, 0)


def test_streams_share_the_decode_rate() -> None:
    # Two streams at slowdown 1: each decodes at 10 / 2 = 5 tokens/s, so 10 tokens take 2 s.
    model = WorkerModel(prefill_tps=100, decode_tps=10, decode_slowdown=1, streams=2)
    result = simulate([Arrival(0.0, 0, 10), Arrival(0.0, 0, 10)], model, FixedPool(1), 0.5)
    assert result.waits_s == [0.0, 0.0]
    assert result.end_s == pytest.approx(2.0)


def test_a_cold_start_delays_the_first_request() -> None:
    # vespid scales from zero at the first tick (0.5 s); the worker is ready 5 s later.
    params = ScalingConfig(max_workers=1, reservoir_workers=0)
    result = simulate([Arrival(0.25, 0, 10)], ONE_STREAM, VespidPolicy(params), tick_s=0.5)
    assert result.waits_s == pytest.approx([5.25])
    assert (result.cold_starts, result.wakes, result.parked_seconds) == (1, 0, 0.0)


def test_a_parked_worker_wakes_instead_of_a_cold_start() -> None:
    # The reservoir (1) starts parked; woken at the first tick (0.5 s), READY 1 s later.
    model = WorkerModel(prefill_tps=100, decode_tps=10, decode_slowdown=0, streams=1,
                        cold_start_s=5, wake_s=1)  # fmt: skip
    params = ScalingConfig(max_workers=1, reservoir_workers=1)
    result = simulate([Arrival(0.25, 0, 10)], model, VespidPolicy(params), tick_s=0.5)
    assert result.waits_s == pytest.approx([1.25])
    assert (result.cold_starts, result.wakes) == (0, 1)
    # parked from 0 to 0.5 s; active (waking, then serving) from 0.5 s to the end
    assert result.parked_seconds == pytest.approx(0.5)
    assert result.worker_seconds == pytest.approx(result.end_s - 0.5)


def _load(seed: int = 1) -> list[Arrival]:
    return generate(LoadSpec(LoadShape.BURSTS, 2.0, 600.0, seed=seed, mean_output=50,
                             on_s=30, off_s=90))  # fmt: skip


def _policies() -> list[VespidPolicy | FixedPool | KnativeKPA]:
    return [VespidPolicy(ScalingConfig(max_workers=8)), FixedPool(2), KnativeKPA(8, 8, 0.5)]


@pytest.mark.parametrize("index", range(3))
def test_every_request_is_served_or_counted(index: int) -> None:
    arrivals = _load()
    result = simulate(arrivals, WorkerModel(), _policies()[index], tick_s=0.5)
    assert result.served + result.unserved == len(arrivals)
    assert len(result.waits_s) == result.served == len(arrivals)
    assert sum(s.arrived for s in result.timeline) == len(arrivals)


def test_requests_no_worker_serves_are_counted_unserved() -> None:
    arrivals = [Arrival(0.0, 10, 10), Arrival(1.0, 10, 10)]
    result = simulate(arrivals, WorkerModel(), FixedPool(0), tick_s=3600)
    assert (result.served, result.unserved, result.waits_s) == (0, 2, [])


def test_the_same_seed_gives_the_same_table() -> None:
    first = [simulate(_load(), WorkerModel(), p, 0.5).summary() for p in _policies()]
    again = [simulate(_load(), WorkerModel(), p, 0.5).summary() for p in _policies()]
    assert first == again
    other = [simulate(_load(2), WorkerModel(), p, 0.5).summary() for p in _policies()]
    assert other != first


def test_a_fixed_pool_never_has_more_than_its_workers() -> None:
    result = simulate(_load(), WorkerModel(streams=2), FixedPool(3), tick_s=0.5)
    assert result.max_workers == 3
    assert all(s.starting + s.idle + s.busy + s.parked <= 3 for s in result.timeline)
    assert result.cold_starts == 0
    assert result.worker_seconds == pytest.approx(3 * result.end_s)


def test_percentile_is_the_nearest_rank() -> None:
    assert percentile([], 0.99) == 0.0
    assert percentile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 0.99) == 99.0
