"""The runner against the client suite's stand-ins: a router, a real worker, a scripted
backend. Fast, and it can hold answers back, fail them, and stream them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.client.conftest import Stack
from tests.support.waiting import wait_until
from vespid.client import Client
from vespid.loadtest import CycledPayloads, LoadPlan, RequestRun, load_test, request_report


def options(stack: Stack) -> dict[str, Any]:
    return {"url": stack.url, "api_key": stack.router.account_key, "max_poll_interval_s": 0.05}


async def test_closed_loop_sends_each_payload_and_counts_add_up(stack: Stack) -> None:
    bodies = [{"n": i} for i in range(3)]
    report = await load_test(
        **options(stack),
        plan=LoadPlan("llm", 9, concurrency=3, timeout_s=10, max_time_s=20),
        payloads=CycledPayloads(bodies, api="generic", path="/echo", cost=7),
    )
    c = report["counts"]
    assert c == {"requested": 9, "sent": 9, "ok": 9, "failed": 0, "cancelled": 0, "not_sent": 0}
    assert report["by_status"] == {"200": 9}
    assert [r["index"] for r in report["requests"]] == list(range(9))
    assert all(r["worker"] == stack.first.url and r["attempts"] == 1 for r in report["requests"])
    assert [b["cost"] for b in stack.router.route_bodies] == [7] * 9
    t = report["throughput"]
    assert t["workload_per_s"] == pytest.approx(t["requests_per_s"] * 7, rel=1e-3)
    lat = report["latency_s"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    # The stand-in router has no status route: sampling stops and the report says so.
    assert report["workers"]["sampled"] == 0
    assert "answered 404" in report["workers"]["problem"]


async def test_worker_errors_are_counted_by_status(stack: Stack) -> None:
    report = await load_test(
        **options(stack),
        plan=LoadPlan("llm", 4, rps=50, timeout_s=10, max_time_s=20),
        payloads=CycledPayloads([{}], api="generic", path="/status/422"),
        sample_workers=False,
    )
    assert report["counts"]["failed"] == 4
    assert report["by_status"] == {"422": 4}
    assert report["latency_s"] is None
    assert "answered 422" in report["requests"][0]["error"]


async def test_max_time_cancels_what_is_in_flight_and_sends_no_more(stack: Stack) -> None:
    plan = LoadPlan("llm", 50, rps=20, timeout_s=30, max_time_s=0.6)
    report = await load_test(
        **options(stack),
        plan=plan,
        payloads=CycledPayloads([{"n": 1}], api="generic", path="/hold"),
        sample_workers=False,
    )
    c = report["counts"]
    assert report["stopped"] == "max_time"
    assert 0 < c["cancelled"] == c["sent"] < 50
    assert c["sent"] + c["not_sent"] == 50
    assert report["duration_s"] < 5
    # The worker saw its clients leave and cancelled the backend calls.
    await wait_until(lambda: stack.backend.active == 0, timeout_s=10)


async def test_stop_event_interrupts_and_the_run_still_reports(stack: Stack) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(
        load_test(
            **options(stack),
            plan=LoadPlan("llm", 5, concurrency=2, timeout_s=30, max_time_s=30),
            payloads=CycledPayloads([{"n": 1}], api="generic", path="/hold"),
            stop=stop,
            sample_workers=False,
        )
    )
    await wait_until(lambda: stack.backend.active == 2, timeout_s=10)
    stop.set()
    report = await asyncio.wait_for(task, 10)
    assert report["stopped"] == "interrupted"
    assert report["counts"]["cancelled"] == 2
    assert report["counts"]["not_sent"] == 3


async def test_first_byte_comes_before_the_end_of_a_stream(stack: Stack) -> None:
    run_plan = LoadPlan("llm", 2, concurrency=2, timeout_s=10, max_time_s=20)
    run = RequestRun(run_plan, CycledPayloads([{}], api="generic", path="/stream"))
    async with Client(stack.url, stack.router.account_key, max_poll_interval_s=0.05) as client:
        task = asyncio.create_task(run.execute(client, sample_workers=False))
        # The backend sent its first event and holds the rest back.
        await wait_until(
            lambda: len(run.records) == 2 and all(r.ttfb_s is not None for r in run.records)
        )
        assert run.progress().done == 0
        await asyncio.sleep(0.2)
        stack.backend.release.set()
        await asyncio.wait_for(task, 10)
    for r in run.records:
        assert r.ttfb_s is not None
        assert r.latency_s is not None
        assert r.latency_s - r.ttfb_s >= 0.2
        assert r.bytes == len(b'data: {"n": 1}\n\ndata: {"n": 2}\n\ndata: [DONE]\n\n')
    report = request_report(run)
    assert report["ttfb_s"]["max"] < report["latency_s"]["min"]
    assert run.progress().text.startswith("ok 2, failed 0, in flight 0, p50 ")


async def test_an_unexpected_failure_is_reported_not_raised(stack: Stack) -> None:
    report = await load_test(
        **options(stack),
        plan=LoadPlan("llm", 2, concurrency=1, timeout_s=10, max_time_s=20),
        payloads=CycledPayloads([{"not json": {1, 2}}], api="generic", path="/echo"),
        sample_workers=False,
    )
    assert report["by_status"] == {"exception": 2}
    assert "not JSON serializable" in report["requests"][0]["error"]


async def test_a_broken_payload_source_is_raised_not_reported_as_nothing_sent(
    stack: Stack,
) -> None:
    """Regression: an error in the payload source vanished and the run reported 0 sent."""

    def broken(index: int) -> Any:
        raise ValueError(f"payload {index} cannot be made")

    for plan in (
        LoadPlan("llm", 3, concurrency=2, timeout_s=10, max_time_s=20),
        LoadPlan("llm", 3, rps=50, timeout_s=10, max_time_s=20),
    ):
        with pytest.raises(ValueError, match="cannot be made"):
            await load_test(**options(stack), plan=plan, payloads=broken)
