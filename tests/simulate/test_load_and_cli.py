"""Loads (a trace CSV, generated shapes) and the ``vespid simulate`` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from vespid.cli.main import cli
from vespid.errors import ConfigError
from vespid.simulate import Arrival, LoadShape, LoadSpec, generate, read_trace

CSV = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:17:03.9799600,4808,10
2023-11-16 18:17:04.0319600,3180,8
2023-11-16 18:17:05.9799600,110,27
"""


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text(CSV)
    return path


def test_a_trace_is_read_from_its_first_request(trace: Path) -> None:
    arrivals = read_trace(trace)
    assert [a.at_s for a in arrivals] == pytest.approx([0.0, 0.052, 2.0])
    assert arrivals[0] == Arrival(0.0, 4808, 10)
    assert [a.at_s for a in read_trace(trace, speed=2, limit=2)] == pytest.approx([0.0, 0.026])


def test_a_file_that_is_not_a_trace_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="not a trace CSV"):
        read_trace(path)


@pytest.mark.parametrize("shape", list(LoadShape))
def test_generated_loads_are_seeded(shape: LoadShape) -> None:
    spec = LoadSpec(shape, 2.0, 600.0, seed=3)
    arrivals = generate(spec)
    assert arrivals == generate(spec)
    assert arrivals != generate(LoadSpec(shape, 2.0, 600.0, seed=4))
    assert all(0 < a.at_s < 600 and a.prompt_tokens >= 1 and a.output_tokens >= 1
               for a in arrivals)  # fmt: skip
    assert arrivals == sorted(arrivals, key=lambda a: a.at_s)


def test_bursts_arrive_in_their_on_phase() -> None:
    spec = LoadSpec(LoadShape.BURSTS, 5.0, 3000.0, seed=1, on_s=60, off_s=240, low=0.0)
    assert all(a.at_s % 300 < 60 for a in generate(spec))
    diurnal = LoadSpec(LoadShape.DIURNAL, 5.0, 600.0, period_s=600, low=0.2)
    assert diurnal.rate_at(0) == pytest.approx(1.0)
    assert diurnal.rate_at(300) == pytest.approx(5.0)


def test_the_command_prints_a_table_and_writes_json_and_svg(trace: Path, tmp_path: Path) -> None:
    out, svg = tmp_path / "out.json", tmp_path / "out.svg"
    result = CliRunner().invoke(cli, [
        "simulate", "--trace", str(trace), "--fixed", "1", "--fixed", "2",
        "--set", "target_queue_time=5", "--json", str(out), "--svg", str(svg),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "load " in result.output
    assert "3 requests" in result.output
    lines = result.output.splitlines()
    assert lines[1].split()[:4] == ["active", "worker-s", "parked", "worker-s"]
    assert [line.split()[0] for line in lines[2:]] == [
        "vespid", "fixed", "fixed", "vast-like", "ray", "knative",
    ]  # fmt: skip
    report = json.loads(out.read_text())
    assert report["scaling"]["target_queue_time"] == 5
    assert [p["policy"] for p in report["policies"]] == [
        "vespid", "fixed 1", "fixed 2", "vast-like", "ray serve", "knative kpa",
    ]  # fmt: skip
    assert all(p["served"] == 3 for p in report["policies"])
    assert svg.read_text().startswith("<svg")
    assert "vespid: queue and workers" in svg.read_text()
    assert all(state in svg.read_text() for state in ("waking", "draining", "parked"))


def test_the_command_refuses_a_bad_scaling_parameter() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["simulate", "--set", "target_util=2", "--duration-s", "10"])
    assert result.exit_code == 2
    assert "target_util" in result.output
    result = runner.invoke(cli, ["simulate", "--set", "nonsense=1"])
    assert result.exit_code == 2
    assert "NAME=VALUE" in result.output


def test_the_same_seed_prints_the_same_table() -> None:
    args = ["simulate", "--load", "diurnal", "--rate", "2", "--duration-s", "600",
            "--period-s", "300", "--seed", "5", "--fixed", "2"]  # fmt: skip
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert CliRunner().invoke(cli, args).output == first.output
