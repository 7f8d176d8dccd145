"""``vespid worker`` on the command line: errors under the name the user typed, and a
``--help`` with headings, defaults and meaningful metavars."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from vespid.cli.main import cli
from vespid.cli.worker import SECTIONS
from vespid.worker.settings import WorkerSettings

BASE_ENV = {"BACKEND_URL": "http://127.0.0.1:1", "UNSECURED": "true"}
NUMBER_ERROR = "Input should be a valid number, unable to parse string as a number (got 'soon')"


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        pytest.param(["--max-wait-time-s", "soon"], {}, "--max-wait-time-s", id="flag"),
        pytest.param([], {"MAX_WAIT_TIME": "soon"}, "MAX_WAIT_TIME", id="env"),
        pytest.param(
            ["--max-wait-time-s", "soon"], {"MAX_WAIT_TIME": "3"}, "--max-wait-time-s", id="both"
        ),
    ],
)
def test_a_bad_value_is_named_as_typed(args: list[str], env: dict[str, str], named: str) -> None:
    result = CliRunner().invoke(cli, ["worker", *args], env={**BASE_ENV, **env})
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"vespid worker: {named}: {NUMBER_ERROR}"]


def test_sections_hold_every_setting_once() -> None:
    listed = [name for names in SECTIONS.values() for name in names]
    assert sorted(listed) == sorted(WorkerSettings.model_fields)


def test_help_has_headings_defaults_and_metavars() -> None:
    result = CliRunner().invoke(cli, ["worker", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = result.output
    assert " VALUE " not in text
    for heading in SECTIONS:
        assert f"\n{heading}:\n" in text
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith("  --")}
    assert "--max-wait-time-s SECONDS" in lines["--max-wait-time-s"]
    assert "[env MAX_WAIT_TIME; default 10.0]" in lines["--max-wait-time-s"]
    assert "--backend-url URL " in lines["--backend-url"]
    assert "--worker-port PORT" in lines["--worker-port"]
    assert "[env WORKER_PORT; default 3000]" in lines["--worker-port"]
    assert "--cache-dir PATH" in lines["--cache-dir"]
    assert "--backend [generic|null]" in lines["--backend"]
    assert "--unsecured BOOL" in lines["--unsecured"]
    assert "default false]" in lines["--unsecured"]
    assert "--rebenchmark BOOL" in lines["--rebenchmark"]


def test_control_help_still_lists_its_settings() -> None:
    result = CliRunner().invoke(cli, ["control", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "--port PORT" in result.output
    assert " VALUE " not in result.output
