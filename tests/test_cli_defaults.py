"""The CLI's defaults for a new user: the API key found through the admin key, the cost
read from the payload, admin options after the subcommand, and the command vespid
suggests runnable as printed."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import orjson
import pytest

from tests.control.conftest import MakeControl, make_control  # noqa: F401 - fixture
from vespid.cli.call import default_cost, endpoint_api_key
from vespid.cli.invocation import Invocation, how_to_run
from vespid.client import DEFAULT_COST, EndpointNotFound
from vespid.control.app import ControlPlane
from vespid.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
KEY_ENV = ("VESPID_API_KEY", "VESPID_ADMIN_KEY", "VESPID_URL", "VESPID_STATE_DIR")


async def cli(*args: str, **env: str) -> tuple[int, str, str]:
    """``vespid ARGS`` with none of the key variables set, except those in ``env``."""
    base = {k: v for k, v in os.environ.items() if k not in KEY_ENV}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vespid.cli.main", *args, cwd=ROOT, env={**base, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def test_default_cost_is_the_payloads_max_tokens() -> None:
    assert default_cost("/v1/completions", {"prompt": "x", "max_tokens": 32}) == 32
    assert default_cost("/v1/chat/completions", {"max_completion_tokens": 20}) == 20
    assert default_cost("/v1/completions/", {"max_tokens": 7}) == 7
    assert default_cost("/generate", {"inputs": "x", "parameters": {"max_new_tokens": 12}}) == 12
    assert default_cost("/generate_stream", {"inputs": "x"}) == DEFAULT_COST
    assert default_cost("/v1/completions", {"prompt": "x"}) == DEFAULT_COST
    assert default_cost("/v1/completions", {"max_tokens": True}) == DEFAULT_COST
    assert default_cost("/echo", {"max_tokens": 5}) == DEFAULT_COST


def _venv(root: Path) -> Path:
    """A virtual environment's bin folder, as ``make`` leaves it (not activated)."""
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("vespid", "python", "activate"):
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    return bin_dir


def test_how_to_run_from_a_venv_that_is_not_activated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = _venv(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setattr(sys, "argv", [".venv/bin/vespid", "demo"])
    assert how_to_run() == Invocation(".venv/bin/vespid", "source .venv/bin/activate")
    # Started as `python -m ...` with the venv's interpreter: its vespid script.
    monkeypatch.setattr(sys, "argv", ["-c", "demo"])
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    assert how_to_run() == Invocation(".venv/bin/vespid", "source .venv/bin/activate")
    # Activated (on PATH): plain vespid.
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    assert how_to_run() == Invocation("vespid")
    # From elsewhere: the absolute path.
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    expected = Invocation(str(bin_dir / "vespid"), f"source {bin_dir}/activate")
    for elsewhere in (tmp_path / "elsewhere", Path("/")):
        elsewhere.mkdir(exist_ok=True)
        monkeypatch.chdir(elsewhere)
        assert how_to_run() == expected


def test_how_to_run_without_a_vespid_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    python = tmp_path / "py" / "bin" / "python3"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["-m"])
    monkeypatch.setattr(sys, "executable", str(python))
    assert how_to_run() == Invocation("py/bin/python3 -m vespid.cli.main")


async def _with_endpoint(make_control: MakeControl) -> tuple[ControlPlane, str]:  # noqa: F811
    control = await make_control()
    code, out, err = await cli(
        "endpoint", "create", "llm", "--url", control.url, "--admin-key", control.admin_key
    )
    assert code == 0, err
    return control, orjson.loads(out)["api_key"]


async def test_endpoint_options_go_after_the_subcommand(
    make_control: MakeControl,  # noqa: F811
) -> None:
    control, _ = await _with_endpoint(make_control)
    code, out, err = await cli("endpoint", "list", "--admin-key", control.admin_key,
                               "--url", control.url)  # fmt: skip
    assert code == 0, err
    assert [e["name"] for e in orjson.loads(out)] == ["llm"]
    # After the subcommand wins over before it (and over the variables).
    code, out, err = await cli(
        "endpoint", "--admin-key", "wrong-key", "list", "--admin-key", control.admin_key,
        VESPID_URL=control.url, VESPID_ADMIN_KEY="wrong-too",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = await cli("endpoint", "delete", "llm", "--url", control.url,
                             "--admin-key", "wrong-key")  # fmt: skip
    assert code == 1
    assert "401" in err


async def test_the_api_key_is_looked_up_with_the_admin_key(
    make_control: MakeControl,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    control, api_key = await _with_endpoint(make_control)
    for name in KEY_ENV:
        monkeypatch.delenv(name, raising=False)
    # Where `vespid control` keeps it: STATE_DIR/admin.key.
    monkeypatch.setenv("VESPID_STATE_DIR", str(tmp_path / "state"))
    assert await endpoint_api_key(control.url, "llm") == api_key
    with pytest.raises(EndpointNotFound, match="no endpoint named 'nope'"):
        await endpoint_api_key(control.url, "nope")
    monkeypatch.setenv("VESPID_ADMIN_KEY", "wrong-key")
    with pytest.raises(ConfigError, match="refused the admin key"):
        await endpoint_api_key(control.url, "llm")
    monkeypatch.setenv("VESPID_ADMIN_KEY", control.admin_key)
    monkeypatch.setenv("VESPID_STATE_DIR", str(tmp_path / "elsewhere"))
    assert await endpoint_api_key(control.url, "llm") == api_key

    # From the shell, the lookup's refusal is the usual one line of JSON.
    code, out, err = await cli("call", "nope", "/v1/completions", "{}", "--url", control.url,
                               VESPID_STATE_DIR=str(tmp_path / "state"))  # fmt: skip
    assert (code, out) == (1, "")
    [line] = err.splitlines()
    assert orjson.loads(line)["code"] == "endpoint_not_found"


async def test_no_api_key_is_one_line_naming_the_three_ways(tmp_path: Path) -> None:
    """docs/control.md's quick start without a control plane's admin key at hand."""
    code, out, err = await cli("call", "llm", "/v1/completions", '{"prompt": "Hello"}',
                               "--stream", VESPID_STATE_DIR=str(tmp_path))  # fmt: skip
    assert (code, out) == (2, "")
    [line] = err.splitlines()
    error = orjson.loads(line)
    assert error["code"] == "config_error"
    for way in ("--api-key", "VESPID_API_KEY", "VESPID_ADMIN_KEY", str(tmp_path / "admin.key")):
        assert way in error["error"], way
