"""Configuration: each mistake stops start-up with one line naming the variable."""

from __future__ import annotations

import asyncio
import sys

import pytest

from vespid.errors import ConfigError
from vespid.worker.settings import WorkerSettings, load_worker_settings

BASE = {"BACKEND_URL": "http://127.0.0.1:8000", "UNSECURED": "true"}


@pytest.mark.parametrize(
    ("env", "line"),
    [
        pytest.param({}, "BACKEND_URL: required (the model server's base URL)", id="no-backend"),
        pytest.param(
            {"BACKEND_URL": "localhost:8000", "UNSECURED": "true"},
            "BACKEND_URL: must start with http:// or https:// (got 'localhost:8000')",
            id="backend-scheme",
        ),
        pytest.param(
            {**BASE, "MAX_WAIT_TIME": "soon"},
            "MAX_WAIT_TIME: Input should be a valid number, unable to parse string as a number"
            " (got 'soon')",
            id="wait-not-number",
        ),
        pytest.param(
            {**BASE, "ALLOW_PARALLEL": "maybe"},
            "ALLOW_PARALLEL: Input should be a valid boolean, unable to interpret input"
            " (got 'maybe')",
            id="parallel-not-bool",
        ),
        pytest.param(
            {**BASE, "WORKER_PORT": "70000"},
            "WORKER_PORT: Input should be less than or equal to 65535 (got '70000')",
            id="port-range",
        ),
        pytest.param(
            {**BASE, "WORKER_PORT": "3001", "VAST_TCP_PORT_3001": "x"},
            "VAST_TCP_PORT_3001: Input should be a valid integer, unable to parse string as an"
            " integer (got 'x')",
            id="public-port",
        ),
        pytest.param(
            {"BACKEND_URL": "http://h:1"},
            "REPORT_ADDR: required to fetch the router's public key (or set"
            " VESPID_PUBLIC_KEY_FILE, or UNSECURED=true for development)",
            id="no-key-source",
        ),
        pytest.param(
            {**BASE, "REPORT_ADDR": "http://ok, autoscaler:80"},
            "REPORT_ADDR: each address must start with http:// or https:// (got 'autoscaler:80')",
            id="report-addr",
        ),
        pytest.param(
            {**BASE, "BENCHMARK": "benchmarks.openai"},
            "BENCHMARK: must look like package.module:function (got 'benchmarks.openai')",
            id="benchmark-form",
        ),
        pytest.param(
            {**BASE, "MODEL_LOG": "/tmp/x.log"},
            "VESPID_LOG_LOADED: required with MODEL_LOG (the log text that means loaded)",
            id="log-without-loaded",
        ),
        pytest.param(
            {**BASE, "VESPID_REQUEST_KEY": "c2hvcnQ="},
            "VESPID_REQUEST_KEY: must decode to at least 32 bytes (got 5)",
            id="request-key-short",
        ),
        pytest.param(
            {**BASE, "VESPID_REQUEST_KEY": "secret but not base64!"},
            "VESPID_REQUEST_KEY: must be base64, as the control plane hands it out",
            id="request-key-not-base64-and-not-echoed",
        ),
        pytest.param(
            {**BASE, "VESPID_MAX_CONCURRENCY": "0"},
            "VESPID_MAX_CONCURRENCY: Input should be greater than or equal to 1 (got '0')",
            id="concurrency",
        ),
    ],
)
def test_bad_setting_is_one_line_naming_the_variable(env: dict[str, str], line: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_worker_settings(env)
    assert str(info.value) == line


def test_flags_override_environment_and_ports_map() -> None:
    settings = load_worker_settings(
        {**BASE, "MAX_WAIT_TIME": "3", "WORKER_PORT": "3005", "VAST_TCP_PORT_3005": "41000",
         "PUBLIC_IPADDR": "1.2.3.4", "REPORT_ADDR": "http://a/, https://b"},
        {"max_wait_time_s": "7", "worker_port": None},
    )  # fmt: skip
    assert settings.max_wait_time_s == 7.0
    assert settings.public_url == "http://1.2.3.4:41000"
    assert settings.report_addr == ["http://a", "https://b"]


def test_every_setting_has_an_env_name_and_description() -> None:
    for name, field in WorkerSettings.model_fields.items():
        assert field.description, name
        assert isinstance(field.json_schema_extra, dict), name


async def test_cli_prints_one_line_and_exits_2() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vespid.worker",
        env={"BACKEND_URL": "http://127.0.0.1:1", "UNSECURED": "true", "MAX_WAIT_TIME": "-1"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert out == b""
    assert err.decode().splitlines() == [
        "vespid worker: MAX_WAIT_TIME: Input should be greater than or equal to 0 (got '-1')"
    ]
