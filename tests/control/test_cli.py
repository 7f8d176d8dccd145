"""``vespid endpoint ...`` and ``vespid control`` as real subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from tests.control.conftest import MakeControl
from vespid.servers.process import free_port


async def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vespid.cli.main", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_endpoint_commands(make_control: MakeControl) -> None:
    control = await make_control()
    base = ["endpoint", "--url", control.url, "--admin-key", control.admin_key]
    command = "python -m server --port {model_port}"
    code, out, err = await cli(*base, "create", "llm", "--set", "max_workers=2",
                               "--set", "min_load=0", "--env", "HEALTHCHECK_ENDPOINT=/health",
                               "--model-command", command)  # fmt: skip
    assert code == 0, err
    created: dict[str, Any] = json.loads(out)
    assert created["scaling"]["max_workers"] == 2
    assert created["template"]["model_command"] == ["python", "-m", "server", "--port",
                                                    "{model_port}"]  # fmt: skip
    assert created["template"]["env"] == {"HEALTHCHECK_ENDPOINT": "/health"}
    code, out, _ = await cli(*base, "update", "llm", "--set", "max_workers=3")
    assert (code, json.loads(out)["scaling"]["max_workers"]) == (0, 3)
    code, out, _ = await cli(*base, "list")
    assert [e["name"] for e in json.loads(out)] == ["llm"]
    code, _, err = await cli(*base, "create", "llm")
    assert code == 1
    assert "exists: change it with `vespid endpoint update llm --set PARAM=VALUE`" in err
    code, out, _ = await cli(*base, "delete", "llm")
    assert (code, json.loads(out)) == (0, {"deleted": "llm"})
    code, _, err = await cli("endpoint", "--url", control.url, "--admin-key", "wrong-key", "list")
    assert code == 1
    assert "401" in err


async def test_control_config_error_is_one_line() -> None:
    code, out, err = await cli("control", env={"VESPID_CONTROL_PORT": "http"})
    assert code == 2
    assert out == ""
    assert err.splitlines() == [
        "vespid control: VESPID_CONTROL_PORT: Input should be a valid integer, unable to parse "
        "string as an integer (got 'http')"
    ]


async def test_control_config_error_names_the_flag_typed() -> None:
    code, out, err = await cli("control", "--port", "http")
    assert code == 2
    assert out == ""
    assert err.splitlines() == [
        "vespid control: --port: Input should be a valid integer, unable to parse "
        "string as an integer (got 'http')"
    ]


async def test_misspelt_endpoints_file_stops_start_up_with_one_line(tmp_path: Path) -> None:
    """Regression: ``endpoint:`` (for ``endpoints:``) started a control plane with 0
    endpoints and no word about the file."""
    path = tmp_path / "endpoints.yaml"
    await asyncio.to_thread(path.write_text, "endpoint:\n  - name: llm\n")
    env = {"VESPID_ENDPOINTS_FILE": str(path), "VESPID_STATE_DIR": str(tmp_path / "state"),
           "VESPID_CONTROL_PORT": "0", "PATH": os.environ.get("PATH", ""),
           "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
           "PYTHONWARNINGS": "always::ResourceWarning"}  # fmt: skip
    code, out, err = await cli("control", env=env)
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"vespid control: {path}: endpoint: unknown key, did you mean 'endpoints'? "
        "(allowed: endpoints)"
    ]  # and no ResourceWarning: no socket or database left open


async def test_unreachable_ray_cluster_is_one_line(tmp_path: Path) -> None:
    """A Ray address where nothing listens stops start-up at once with one line, rather
    than leaving ray.init to wait for minutes."""
    port = free_port()
    env = {"VESPID_PROVIDER": "ray", "VESPID_RAY_ADDRESS": f"127.0.0.1:{port}",
           "VESPID_STATE_DIR": str(tmp_path), "VESPID_CONTROL_PORT": "0",
           "PATH": os.environ.get("PATH", "")}  # fmt: skip
    code, out, err = await cli("control", env=env)
    assert code == 2
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith(
        f"vespid control: VESPID_RAY_ADDRESS: nothing answers at 127.0.0.1:{port} ("
    )
    assert line.endswith("start the cluster's head (ray start --head) or fix the address")
