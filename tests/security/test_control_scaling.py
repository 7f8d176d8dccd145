"""Finding 1: one tenant cannot stall autoscaling for the others.

``/route/`` refuses non-finite, negative and absurd costs (422 naming ``cost`` and
``VESPID_MAX_ROUTE_COST``); the policy never raises on any finite input (property test);
and an endpoint whose scaling step fails is logged and contained while another scales
from zero.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.control.attack import NULL_ENDPOINT
from tests.control.conftest import MakeControl, admin
from tests.support.waiting import wait_until
from vespid.control.app import ControlPlane
from vespid.control.models import EndpointConfig
from vespid.control.policy import (
    PolicyState,
    ScalingConfig,
    ScalingSnapshot,
    WorkerPhase,
    WorkerView,
    decide,
)
from vespid.control.policy_types import MAX_WORKERS

BAD_COSTS: list[Any] = [1e308, 1e10, -1, -1e-9, "Infinity", "1e308", None, [], {"x": 1}, True]


async def _endpoint(session: aiohttp.ClientSession, control: ControlPlane, name: str) -> str:
    status, ep = await admin(session, control, "POST", "/api/v0/endpoints",
                             {"name": name, **NULL_ENDPOINT})  # fmt: skip
    assert status == 201, ep
    return str(ep["api_key"])


async def test_absurd_costs_are_refused_at_route(
    make_control: MakeControl,
    http: aiohttp.ClientSession,
) -> None:
    control = await make_control(route_hold_s=0)
    key = await _endpoint(http, control, "victim")
    for cost in BAD_COSTS:
        body = {"endpoint": "victim", "api_key": key, "cost": cost}
        async with http.post(control.url + "/route/", json=body) as resp:
            assert resp.status == 422, (cost, await resp.text())
            err = await resp.json()
        assert "cost" in err["fields"], err
    # Bodies no JSON library writes: NaN and Infinity literals.
    for literal in (b"NaN", b"Infinity", b"-Infinity", b"1e999"):
        raw = b'{"endpoint": "victim", "api_key": "%s", "cost": %s}' % (key.encode(), literal)
        async with http.post(control.url + "/route/", data=raw) as resp:
            assert resp.status == 422, (literal, await resp.text())
    async with http.post(control.url + "/route/", json={"endpoint": "victim", "api_key": key,
                                                         "cost": 2e9}) as resp:  # fmt: skip
        assert "VESPID_MAX_ROUTE_COST" in (await resp.json())["error"]
    assert not control.router.queued_load("victim")[1]  # nothing was queued


async def test_an_endpoint_whose_step_fails_does_not_stop_the_others(
    make_control: MakeControl,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    control = await make_control(route_hold_s=0)
    await _endpoint(http, control, "broken")
    healthy = await _endpoint(http, control, "healthy")
    decide_one = control.autoscaler._decide

    def failing(endpoint: EndpointConfig) -> Any:
        if endpoint.name == "broken":
            raise OverflowError("cannot convert float infinity to integer")
        return decide_one(endpoint)

    control.autoscaler._decide = failing  # type: ignore[method-assign]
    caplog.set_level(logging.ERROR, "vespid.control")
    body = {"endpoint": "healthy", "api_key": healthy, "cost": 1}
    async with http.post(control.url + "/route/", json=body) as resp:
        assert resp.status == 200
    await wait_until(lambda: any(
        w.phase is WorkerPhase.READY and w.handle.endpoint == "healthy"
        for w in control.fleet.workers.values()
    ), timeout_s=30)  # fmt: skip
    failures = [r for r in caplog.records if "scaling broken failed" in r.getMessage()]
    assert len(failures) == 1  # logged once, not at every tick
    assert failures[0].exc_info is None


finite = st.floats(min_value=0, max_value=1.7e308, allow_nan=False, allow_infinity=False)
tiny_or_huge = st.one_of(finite, st.sampled_from([5e-324, 1e-300, 1e300, 1.7976931348623157e308]))


@st.composite
def snapshots(draw: st.DrawFn) -> ScalingSnapshot:
    params = ScalingConfig(
        min_load=draw(tiny_or_huge),
        target_util=draw(st.sampled_from([5e-324, 1e-300, 0.5, 1.0])),
        cold_mult=draw(tiny_or_huge),
        cold_workers=draw(st.integers(0, MAX_WORKERS)),
        max_workers=draw(st.integers(0, MAX_WORKERS)),
        inactivity_timeout=draw(st.floats(-1e308, 1e308)),
        max_queue_time=draw(st.one_of(tiny_or_huge, st.just(float("inf")))),
        target_queue_time=draw(tiny_or_huge),
        scale_down_delay=draw(tiny_or_huge),
    )
    workers = tuple(
        WorkerView(
            worker_id=str(i),
            state=draw(st.sampled_from(list(WorkerPhase))),
            cur_load=draw(tiny_or_huge),
            max_perf=draw(st.one_of(st.none(), tiny_or_huge)),
            sessions=draw(st.integers(0, 10**9)),
            in_flight=draw(st.integers(0, 10**9)),
            started_at=draw(st.floats(-1e308, 1e308)),
        )
        for i in range(draw(st.integers(0, 4)))
    )
    return ScalingSnapshot(
        now=draw(st.floats(-1e308, 1e308)),
        params=params,
        default_perf=draw(st.one_of(st.sampled_from([5e-324, 1e308]), finite.filter(bool))),
        ready_timeout_s=draw(tiny_or_huge),
        gpus_per_worker=draw(st.integers(0, 8)),
        workers=workers,
        queued_load=draw(tiny_or_huge),
        queued_requests=draw(st.integers(0, 10**6)),
        rejected_load_rate=draw(tiny_or_huge),
        arrival_rate=draw(tiny_or_huge),
        last_activity_at=draw(st.one_of(st.none(), st.floats(-1e308, 1e308))),
        start_failures=draw(st.integers(0, 10**6)),
        free_gpus=draw(st.one_of(st.none(), st.integers(0, 64))),
        launching=draw(st.integers(0, 100)),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshot=snapshots(), pending=st.sampled_from([None, 0.0, -1e308, 1e308]))
def test_the_policy_never_raises_on_finite_input(
    snapshot: ScalingSnapshot, pending: float | None
) -> None:
    state = PolicyState(start_after=pending)
    decision, after = decide(snapshot, state)
    assert 0 <= decision.start <= max(snapshot.params.max_workers, 1)
    decide(snapshot, after)  # and the state it returns is as good an input
