"""Findings 2, 4 and 12 (state): every value the admin API stores loads again; a state
that cannot load stops start-up with one line; a deleted database is one line saying new
keys were made; the state directory is 700 and everything in it 600, fixed at start."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sqlite3
import stat
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.control.conftest import MakeControl, admin
from vespid.control.models import EndpointConfig, parse_endpoint
from vespid.control.policy import ScalingConfig
from vespid.errors import RequestInvalid

NON_FINITE = ["inf", "-inf", "nan", "Infinity", "NaN", "1e999"]
FLOAT_FIELDS = ["min_load", "target_util", "cold_mult", "inactivity_timeout",
                "target_queue_time", "scale_down_delay"]  # fmt: skip


async def test_the_admin_api_refuses_non_finite_scaling(
    make_control: MakeControl,
    http: aiohttp.ClientSession,
) -> None:
    control = await make_control()
    tried = 0
    for field in FLOAT_FIELDS:
        for value in NON_FINITE:
            body = {"name": "e", "scaling": {field: value, "max_workers": 0}}
            status, err = await admin(http, control, "POST", "/api/v0/endpoints", body)
            assert status == 422, (field, value, err)
            assert f"scaling.{field}" in err["fields"]
            tried += 1
    for value in NON_FINITE:
        status, err = await admin(http, control, "POST", "/api/v0/endpoints",
                                  {"name": "e", "template": {"ready_timeout": value}})  # fmt: skip
        assert (status, list(err["fields"])) == (422, ["template.ready_timeout"]), value
    # And the same through PUT, onto an endpoint that exists.
    assert (await admin(http, control, "POST", "/api/v0/endpoints", {"name": "e"}))[0] == 201
    status, err = await admin(http, control, "PUT", "/api/v0/endpoints/e",
                              {"scaling": {"min_load": "inf"}})  # fmt: skip
    assert status == 422
    assert control.endpoints["e"].scaling.min_load == 0
    assert tried == len(FLOAT_FIELDS) * len(NON_FINITE)


async def test_an_infinite_max_queue_time_is_stored_and_loads_again(
    make_control: MakeControl,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    first = await make_control(state_dir=state)
    body = {"name": "e", "scaling": {"max_queue_time": "Infinity", "max_workers": 0}}
    status, created = await admin(http, first, "POST", "/api/v0/endpoints", body)
    assert status == 201, created
    assert created["scaling"]["max_queue_time"] == "Infinity"  # JSON has no infinite number
    # The listing reads back into an update unchanged.
    status, updated = await admin(http, first, "PUT", "/api/v0/endpoints/e", created)
    assert status == 200, updated
    second = await make_control(state_dir=tmp_path / "state")  # the same state, a new process
    assert math.isinf(second.endpoints["e"].scaling.max_queue_time)


endpoint_bodies = st.fixed_dictionaries(
    {"name": st.from_regex(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,8}$", fullmatch=True)},
    optional={
        "scaling": st.dictionaries(
            st.sampled_from([*FLOAT_FIELDS, "max_queue_time", "max_workers", "cold_workers"]),
            st.one_of(
                st.floats(),
                st.integers(-(2**70), 2**70),
                st.sampled_from(NON_FINITE),
                st.text(max_size=4),
                st.booleans(),
                st.none(),
            ),
        ),
        "template": st.fixed_dictionaries(
            {},
            optional={
                "ready_timeout": st.one_of(st.floats(), st.sampled_from(NON_FINITE)),
                "gpus_per_worker": st.integers(-5, 2**70),
                "env": st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
            },
        ),
    },
)


@settings(max_examples=300, deadline=None)
@given(body=endpoint_bodies)
def test_every_accepted_endpoint_loads_again(body: dict[str, Any]) -> None:
    """What the admin API accepts is what the store keeps, and what it keeps loads."""
    try:
        endpoint = parse_endpoint(body)
    except RequestInvalid:
        return
    assert EndpointConfig.model_validate_json(endpoint.model_dump_json()) == endpoint


async def _start_in_a_subprocess(state: Path) -> tuple[int, str]:
    """``vespid control`` on a state dir; its exit code and stderr (it must not start)."""
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
           "VESPID_STATE_DIR": str(state), "VESPID_CONTROL_PORT": "0"}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vespid.cli.main", "control", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


def _write_row(db: Path, config: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS endpoints (name TEXT PRIMARY KEY, config TEXT)")
        conn.execute("INSERT INTO endpoints VALUES ('old', ?)", (config,))
    conn.close()


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        pytest.param("null", ["stored endpoint 'old'", "scaling.max_queue_time"],
                     id="null-as-stored-before"),
        pytest.param("garbage", ["cannot be read", "file is not a database"], id="corrupted"),
    ],
)  # fmt: skip
async def test_a_state_that_cannot_load_is_one_line(
    tmp_path: Path, damage: str, words: list[str]
) -> None:
    state = tmp_path / "state"
    await asyncio.to_thread(state.mkdir, mode=0o700)
    db = state / "vespid.db"
    if damage == "garbage":
        await asyncio.to_thread(db.write_bytes, b"this is not sqlite" * 100)
    else:
        # What an inf max_queue_time was stored as before: null.
        config = (
            EndpointConfig(name="old", scaling=ScalingConfig(max_queue_time=30.0))
            .model_dump_json()
            .replace('"max_queue_time":30.0', '"max_queue_time":null')
        )
        await asyncio.to_thread(_write_row, db, config)
    await asyncio.to_thread(db.chmod, 0o600)  # private, as the control plane makes it
    code, err = await _start_in_a_subprocess(state)
    assert code == 2, err
    [line] = err.splitlines()
    assert line.startswith("vespid control: ")
    for word in words:
        assert word in line, line


async def test_a_deleted_database_is_one_line_saying_new_keys_were_made(
    make_control: MakeControl,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = tmp_path / "state"
    first = await make_control(state_dir=state)
    old_key = first.public_key_pem
    await first.close()  # the state as a stopped control plane leaves it
    for name in ("vespid.db", "vespid.db-wal", "vespid.db-shm"):
        await asyncio.to_thread((state / name).unlink, missing_ok=True)
    caplog.set_level(logging.WARNING, "vespid.control")
    second = await make_control(state_dir=state)
    assert second.public_key_pem != old_key
    lines = [r.getMessage() for r in caplog.records if "new keys were made" in r.getMessage()]
    assert len(lines) == 1
    assert "\n" not in lines[0]


def _modes(state: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in [state, *state.iterdir()]}


async def test_the_state_directory_is_private(
    make_control: MakeControl,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = tmp_path / "state"
    control = await make_control(state_dir=state)
    await admin(http, control, "POST", "/api/v0/endpoints", {"name": "e"})  # the WAL is written
    modes = await asyncio.to_thread(_modes, state)
    assert {"vespid.db", "vespid.db-wal", "vespid.db-shm", "admin.key"} <= set(modes), modes
    assert modes.pop("state") == 0o700
    for name, mode in modes.items():
        assert mode & 0o077 == 0, (name, oct(mode))


async def test_a_loose_state_directory_is_fixed_and_warned_about(
    make_control: MakeControl,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = tmp_path / "state"
    first = await make_control(state_dir=state)
    await first.close()

    def loosen() -> None:
        state.chmod(0o755)
        for path in state.iterdir():
            path.chmod(0o755 if path.is_dir() else 0o644)

    await asyncio.to_thread(loosen)
    caplog.set_level(logging.WARNING, "vespid.control")
    await make_control(state_dir=state)
    modes = await asyncio.to_thread(_modes, state)
    assert modes.pop("state") == 0o700
    for name, mode in modes.items():
        assert mode & 0o077 == 0, (name, oct(mode))
    warned = [r.getMessage() for r in caplog.records if "readable or writable by others" in
              r.getMessage()]  # fmt: skip
    assert any(str(state / "vespid.db") in line for line in warned), warned
