"""The load test's pure parts: percentiles, payloads, plans, reports and plots."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import orjson
import pytest

from vespid.errors import ConfigError
from vespid.loadtest import (
    CycledPayloads,
    GeneratedPayloads,
    LoadPlan,
    RequestRecord,
    RequestRun,
    SessionPlan,
    SessionRecord,
    SessionRun,
    load_payload_file,
    render_text,
    request_report,
    session_report,
)
from vespid.loadtest.display import plain_line
from vespid.loadtest.payloads import cost_of
from vespid.loadtest.plot import check_plot_path, nice_step, render_html, render_svg, write_plot
from vespid.loadtest.runner import Progress
from vespid.loadtest.stats import percentile, summary
from vespid.loadtest.workers import WorkerSample, WorkerSampler, _count


def test_percentile_worked_example_and_summary_order() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([1, 2, 3, 4], 90) == pytest.approx(3.7)
    assert percentile([7], 99) == 7
    s = summary([5.0, 0.1, 0.4, 3.0, 0.2, 0.3])
    assert s is not None
    assert s["min"] <= s["p50"] <= s["p90"] <= s["p99"] <= s["max"]
    assert s["min"] == 0.1
    assert s["max"] == 5.0
    assert summary([]) is None
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_openai_payloads_vary_and_cost_their_max_tokens() -> None:
    gen = GeneratedPayloads("openai", max_tokens=64, seed=3)
    payloads = [gen(i) for i in range(40)]
    assert {p.path for p in payloads} == {"/v1/completions"}
    for p in payloads:
        assert 32 <= p.body["max_tokens"] <= 64
        assert p.cost == p.body["max_tokens"]
        assert "stream" not in p.body
    assert len({p.body["prompt"] for p in payloads}) > 30
    assert len({p.body["max_tokens"] for p in payloads}) > 5
    # Payload i depends on the seed and i only.
    assert GeneratedPayloads("openai", max_tokens=64, seed=3)(17) == payloads[17]
    assert GeneratedPayloads("openai", max_tokens=64, seed=4)(17) != payloads[17]
    assert GeneratedPayloads("openai", stream=True)(0).body["stream"] is True


def test_tgi_and_generic_payloads() -> None:
    tgi = GeneratedPayloads("tgi", max_tokens=10, stream=True)(1)
    assert tgi.path == "/generate_stream"
    assert tgi.cost == tgi.body["parameters"]["max_new_tokens"]
    assert isinstance(tgi.body["inputs"], str)
    assert GeneratedPayloads("tgi")(1).path == "/generate"
    generic = GeneratedPayloads("generic", path="run")(0)
    assert (generic.path, generic.cost) == ("/run", 100.0)
    assert set(generic.body) == {"input"}
    assert GeneratedPayloads("generic", cost=7)(0).cost == 7
    assert GeneratedPayloads("openai", cost=5)(0).cost == 5  # --cost wins over max_tokens
    with pytest.raises(ConfigError, match="unknown API"):
        GeneratedPayloads("grpc")  # type: ignore[arg-type]


def test_cost_rules() -> None:
    assert cost_of("openai", {"max_tokens": 12}) == 12
    assert cost_of("openai", {"max_completion_tokens": 9}) == 9
    assert cost_of("openai", {"max_tokens": True}) is None
    assert cost_of("tgi", {"parameters": {"max_new_tokens": 3}}) == 3
    assert cost_of("generic", {"max_tokens": 12}) is None
    assert cost_of("openai", ["not", "a", "dict"]) is None


def test_payload_files_json_array_value_and_lines(tmp_path: Path) -> None:
    array = tmp_path / "a.json"
    array.write_text('[{"prompt": "a", "max_tokens": 4}, {"prompt": "b"}]')
    bodies = load_payload_file(array)
    assert bodies == [{"prompt": "a", "max_tokens": 4}, {"prompt": "b"}]
    cycled = CycledPayloads(bodies, api="openai")
    assert [cycled(i).body["prompt"] for i in range(5)] == ["a", "b", "a", "b", "a"]
    assert (cycled(0).cost, cycled(1).cost) == (4, 100)  # max_tokens, else the default
    assert cycled(0).path == "/v1/completions"
    assert CycledPayloads(bodies, api="generic", path="/echo", cost=2)(0).cost == 2

    single = tmp_path / "one.json"
    single.write_text('{"inputs": "x"}')
    assert load_payload_file(single) == [{"inputs": "x"}]

    lines = tmp_path / "p.jsonl"
    lines.write_text('{"n": 1}\n\n{"n": 2}\n')
    assert load_payload_file(lines) == [{"n": 1}, {"n": 2}]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"n": 1}\n{oops\n', "line 2 is not JSON"),
        ("[]", "empty JSON array"),
        ("\n\n", "holds no payload"),
    ],
)
def test_payload_file_mistakes_name_the_file_and_line(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_payload_file(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_payload_file(tmp_path / "missing.jsonl")


def test_plans_refuse_nonsense_and_describe_themselves() -> None:
    assert LoadPlan("e", 40, rps=2).describe() == "40 requests at 2 rps"
    assert LoadPlan("e", 40, rps=2, concurrency=3).describe().endswith("(at most 3 in flight)")
    assert LoadPlan("e", 10, concurrency=4).describe() == "10 requests, 4 at a time"
    assert LoadPlan("e", 10).lanes == 1
    with pytest.raises(ConfigError, match="at least 1"):
        LoadPlan("e", 0)
    with pytest.raises(ConfigError, match="rps must be > 0"):
        LoadPlan("e", 1, rps=0)
    with pytest.raises(ConfigError, match="max_time_s"):
        LoadPlan("e", 1, max_time_s=-1)
    plan = SessionPlan("e", 3, interval_s=10, plateau_s=60)
    assert plan.lifetime == 2 * 3 * 10 + 60 + 60
    assert SessionPlan("e", 3, lifetime_s=5).lifetime == 5
    with pytest.raises(ConfigError, match="interval_s"):
        SessionPlan("e", 3, interval_s=-1)


def _request_run() -> RequestRun:
    """A finished run made by hand: 5 ok, 1 answered 503, 1 timed out, 1 cancelled."""
    run = RequestRun(LoadPlan("llm", 10, rps=2), GeneratedPayloads("openai"))
    run.elapsed_s = 5.0
    run.started_at = 1_700_000_000.0
    for i, lat in enumerate([0.4, 0.2, 1.5, 0.3, 0.9]):
        run.records.append(
            RequestRecord(i, "/v1/completions", 16, i * 0.5, "ok", 200, lat, lat / 2, 100, 1, "w")
        )
    run.records.append(
        RequestRecord(5, "/v1/completions", 16, 2.5, "worker_error", 503, 0.1, None, 0, 5, None,
                      "worker answered 503")
    )  # fmt: skip
    run.records.append(RequestRecord(6, "/p", 16, 3.0, "timeout", None, 2.0))
    run.records.append(RequestRecord(7, "/p", 16, 3.5, "cancelled"))
    sampler = WorkerSampler(None, "http://x", "llm", clock=lambda: 0.0)  # type: ignore[arg-type]
    sampler.samples += [
        WorkerSample(0.0, {}, 3),
        WorkerSample(1.0, {"starting": 1}, 3),
        WorkerSample(2.0, {"ready": 1}, 0),
        WorkerSample(3.0, {"ready": 1}, 0),
        WorkerSample(4.0, {"ready": 1, "starting": 1}, 0),
    ]
    run.sampler = sampler
    return run


def test_request_report_counts_add_up_and_text_says_it() -> None:
    report = request_report(_request_run(), source="openai /v1/completions, generated")
    c = report["counts"]
    assert c == {"requested": 10, "sent": 8, "ok": 5, "failed": 2, "cancelled": 1, "not_sent": 2}
    assert report["by_status"] == {"200": 5, "503": 1, "cancelled": 1, "timeout": 1}
    lat = report["latency_s"]
    assert (lat["min"], lat["p50"], lat["max"]) == (0.2, 0.4, 1.5)
    assert report["ttfb_s"]["p50"] == 0.2
    assert report["throughput"] == {
        "requests_per_s": 1.0, "workload_per_s": 16.0, "bytes_per_s": 100.0,
    }  # fmt: skip
    assert report["retries"] == {"retried": 1, "max_attempts": 5}
    workers = report["workers"]
    assert (workers["sampled"], workers["max_ready"], workers["max_total"]) == (5, 1, 2)
    assert [ch["t_s"] for ch in workers["changes"]] == [0.0, 1.0, 2.0, 4.0]  # states changed
    assert (workers["first_ready_s"], workers["max_queued"]) == (2.0, 3)
    assert len(report["requests"]) == 8
    orjson.dumps(report)  # JSON-ready

    text = render_text(report)
    assert "10 asked: 8 sent, 5 ok, 2 failed, 1 cancelled, 2 not sent" in text
    assert "by status    200: 5, 503: 1, cancelled: 1, timeout: 1" in text
    assert "latency      p50 400 ms, p90" in text
    assert "throughput   1.00 requests/s, 16.0 workload/s" in text
    assert "first error  #5: worker answered 503" in text
    assert "1 ready of 2 (starting 1)" in text
    assert "3 queued at the router; first ready at 2.0 s" in text
    assert "0 ready of 0, 3 queued" in text
    text.encode("ascii")  # plain for any terminal


def _session_run() -> SessionRun:
    run = SessionRun(SessionPlan("null", 3, interval_s=1, plateau_s=2))
    run.elapsed_s = 9.0
    run.records += [
        SessionRecord(0, 0.0, "closed", 2.0, 2.0, 6.0, "http://w1", "s1"),
        SessionRecord(1, 1.0, "closed", 2.5, 3.5, 7.0, "http://w2", "s2"),
        SessionRecord(2, 2.0, "timeout", error="no worker"),
    ]
    return run


def test_session_report_and_text() -> None:
    report = session_report(_session_run())
    assert report["counts"] == {
        "requested": 3, "started": 3, "opened": 2, "failed": 1, "cancelled": 0,
        "not_started": 0, "closed": 2,
    }  # fmt: skip
    assert report["open_latency_s"]["p50"] == 2.25
    assert report["max_open"] == 2
    assert report["workers"]["problem"] == "not sampled"
    text = render_text(report)
    assert "3 asked: 2 opened, 1 failed" in text
    assert "#1   asked at 1.0 s, open after 2.50 s on http://w2, closed at 7.0 s" in text
    assert "#2   timeout: no worker" in text
    assert "workers      not sampled: not sampled" in text


@pytest.mark.parametrize("make", [_request_run, _session_run])
def test_plots_are_well_formed_svg_and_html(make: Any, tmp_path: Path) -> None:
    run = make()
    report = request_report(run) if isinstance(run, RequestRun) else session_report(run)
    svg = render_svg(report)
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    titles = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert any(t.startswith("Workers") for t in titles)
    if isinstance(run, RequestRun):
        assert "Latency by request start" in titles
        assert any(t.startswith("Throughput") for t in titles)
        dots = list(root.iter("{http://www.w3.org/2000/svg}circle"))
        assert len(dots) == 2 * 5  # latency and first byte of each success
    page = render_html(report)
    assert page.startswith("<!doctype html>")
    assert "<svg" in page
    assert "vespid loadtest" in page
    write_plot(report, tmp_path / "p.html")
    write_plot(report, tmp_path / "p.svg")
    ET.parse(tmp_path / "p.svg")
    with pytest.raises(ConfigError, match=r"\.html"):
        check_plot_path(tmp_path / "p.png")


def test_nice_steps() -> None:
    assert [nice_step(s) for s in (10, 23, 0.7, 1000)] == [2, 5, 0.2, 200]
    assert nice_step(0) == 1


def test_status_counting() -> None:
    status = {
        "endpoints": [
            {"name": "other", "workers": [{"state": "ready"}]},
            {"name": "llm", "queued": 2,
             "workers": [{"state": "ready"}, {"state": "starting"}, {"state": "ready"}]},
        ]
    }  # fmt: skip
    assert _count(status, "llm") == ({"ready": 2, "starting": 1}, 2)
    assert _count(status, "gone") == ({}, 0)
    assert _count({"detail": "no"}, "llm") is None


def test_plain_progress_line() -> None:
    line = plain_line(Progress(12.34, 5, 40, "ok 5, failed 0"))
    assert line == "[   12.3 s] 5/40 ok 5, failed 0"
