"""End to end on 127.0.0.1: ``vespid loadtest`` against a real control plane, real
llama.cpp workers on the tiny model (requests) and null workers (sessions)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.control.conftest import MakeControl, admin
from tests.control.test_scaling_e2e import llama_endpoint
from tests.support.waiting import wait_until
from vespid.control.app import ControlPlane
from vespid.loadtest import GeneratedPayloads, LoadPlan, load_test

ROOT = Path(__file__).resolve().parent.parent.parent
ENTRY = "from vespid.cli.main import main; main()"


async def loadtest_cli(control: ControlPlane, key: str, *args: str) -> tuple[int, str, str]:
    """``vespid loadtest ARGS`` as a subprocess, with the URL and key in the environment."""
    env = {**os.environ, "VESPID_URL": control.url, "VESPID_API_KEY": key,
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ENTRY, "loadtest", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(90):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def check_request_report(report: dict[str, Any], n: int) -> None:
    """Counts add up, percentiles are ordered, each request is accounted for."""
    c = report["counts"]
    assert c["requested"] == n
    assert c["sent"] + c["not_sent"] == n
    assert c["ok"] + c["failed"] + c["cancelled"] == c["sent"]
    assert sum(report["by_status"].values()) == c["sent"]
    assert len(report["requests"]) == c["sent"]
    for key in ("latency_s", "ttfb_s"):
        s = report[key]
        assert 0 < s["min"] <= s["p50"] <= s["p90"] <= s["p99"] <= s["max"], key
    assert report["ttfb_s"]["p50"] <= report["latency_s"]["p50"]
    ok = [r for r in report["requests"] if r["outcome"] == "ok"]
    rate = report["throughput"]["requests_per_s"]
    assert rate * report["duration_s"] == pytest.approx(len(ok), rel=0.01)
    for r in ok:
        assert r["status"] == 200
        assert r["ttfb_s"] <= r["latency_s"]


async def test_requests_at_a_rate_through_the_cli_then_at_a_concurrency(
    make_control: MakeControl, http: aiohttp.ClientSession, tiny_model: Path, tmp_path: Path
) -> None:
    control = await make_control()
    # Never active yet, so inactive: no worker until the first request (with
    # inactivity_timeout 0 the endpoint would never be inactive and a worker would start at
    # once, racing the first request); then up for longer than the test.
    spec = llama_endpoint(tiny_model, inactivity_timeout=300)
    _, ep = await admin(http, control, "POST", "/api/v0/endpoints", spec)
    assert not control.fleet.workers  # the run starts from zero workers

    out_json, out_plot = tmp_path / "report.json", tmp_path / "report.html"
    code, out, err = await loadtest_cli(
        control, ep["api_key"], "-e", "llm", "-n", "12", "-rps", "4", "--max-tokens", "8",
        "--timeout", "60", "--max-time", "80", "--poll-interval", "0.2",
        "--json", str(out_json), "--plot", str(out_plot),
    )  # fmt: skip
    assert code == 0, err
    report = orjson.loads(await asyncio.to_thread(out_json.read_bytes))
    check_request_report(report, 12)
    assert report["counts"]["ok"] == 12
    assert report["by_status"] == {"200": 12}
    for r in report["requests"]:
        assert 4 <= r["cost"] <= 8  # max_tokens drawn in [8 // 2, 8]
    workers = report["workers"]
    assert workers["problem"] is None
    assert workers["sampled"] >= 2
    # The first request found no worker ready: the router queued it (the first status
    # sample may already see the worker, which the tiny model readies in about a second).
    assert control.router.decisions["queued"] >= 1
    assert workers["max_ready"] >= 1
    assert 0 < workers["first_ready_s"] < report["duration_s"]
    times = [s["t_s"] for s in workers["samples"]]
    assert times == sorted(times)
    # The text on stdout, the plain progress lines on stderr (not a terminal).
    assert "12 asked: 12 sent, 12 ok, 0 failed" in out
    assert f"plot         {out_plot}" in out
    assert "/12 ok " in err
    page = await asyncio.to_thread(out_plot.read_text)
    assert page.startswith("<!doctype html>")
    assert "Workers (control plane status)" in page

    # Closed loop on the now warm endpoint, in process.
    report = await load_test(
        url=control.url, api_key=ep["api_key"], max_poll_interval_s=0.2,
        plan=LoadPlan("llm", 8, concurrency=4, timeout_s=60, max_time_s=60),
        payloads=GeneratedPayloads("openai", max_tokens=6),
    )  # fmt: skip
    check_request_report(report, 8)
    assert report["counts"]["ok"] == 8
    assert report["workers"]["max_ready"] >= 1


def null_endpoint() -> dict[str, Any]:
    """Null workers as the session demo wants them: one session each, cost = max_perf = 100."""
    return {
        "name": "null",
        "scaling": {"min_load": 0, "max_workers": 3, "target_util": 1.0, "max_queue_time": 0,
                    "target_queue_time": 0, "inactivity_timeout": 0, "scale_down_delay": 0.5,
                    "reservoir_workers": 0},
        "template": {"env": {"VESPID_LOG_LEVEL": "warning"}, "ready_timeout": 30},
    }  # fmt: skip


async def test_sessions_open_one_by_one_each_on_its_own_null_worker(
    make_control: MakeControl, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    control = await make_control()
    _, ep = await admin(http, control, "POST", "/api/v0/endpoints", null_endpoint())
    out_json, out_plot = tmp_path / "sessions.json", tmp_path / "sessions.svg"
    code, out, err = await loadtest_cli(
        control, ep["api_key"], "-e", "null", "--sessions", "-n", "2", "--interval", "0.5",
        "--plateau", "1", "--session-cost", "100", "--timeout", "40", "--max-time", "60",
        "--poll-interval", "0.2", "--json", str(out_json), "--plot", str(out_plot),
    )  # fmt: skip
    assert code == 0, err
    report = orjson.loads(await asyncio.to_thread(out_json.read_bytes))
    c = report["counts"]
    assert c == {"requested": 2, "started": 2, "opened": 2, "failed": 0, "cancelled": 0,
                 "not_started": 0, "closed": 2}  # fmt: skip
    assert report["plan"]["cost"] == 100
    sessions = report["sessions"]
    assert len({s["worker"] for s in sessions}) == 2  # one session per null worker
    assert sessions[1]["started_s"] >= 0.5  # opened --interval after the run's start
    assert report["max_open"] == 2
    s = report["open_latency_s"]
    assert 0 < s["min"] <= s["p50"] <= s["p90"] <= s["p99"] <= s["max"]
    for one in sessions:
        assert one["opened_s"] - one["started_s"] == pytest.approx(one["open_latency_s"], abs=1e-3)
        assert one["closed_s"] >= one["opened_s"] + 1.0  # held through the plateau
    workers = report["workers"]
    assert workers["sampled"] >= 2
    assert workers["max_ready"] == 2
    assert "2 asked: 2 opened, 0 failed" in out
    assert "2/2 done, opened 2, open now 0" in err  # the last live line
    svg = await asyncio.to_thread(out_plot.read_text)
    assert svg.startswith("<svg")
    assert "Sessions open" in svg
    # Closed on the workers too: none holds a session any more.
    await wait_until(
        lambda: all(w.cur_load == 0 for w in control.fleet.workers.values()), timeout_s=10
    )
