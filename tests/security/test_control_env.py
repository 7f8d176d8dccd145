"""Finding 5 and 12 (restart): a worker and its model server get an allow-listed
environment plus what the template names, never the control plane's secrets; and a
restart signals only process groups that are provably the ones the earlier run started."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.control.conftest import MakeControl, admin
from tests.support.waiting import wait_until
from vespid.control.policy import WorkerPhase
from vespid.control.providers.base import WorkerHandle
from vespid.control.store import SQLiteStore
from vespid.servers.process import process_start_time

SECRETS = {"VESPID_ADMIN_KEY": "admin-secret-123456", "AWS_SECRET_ACCESS_KEY": "aws-secret",
           "HF_TOKEN": "hf-secret"}  # fmt: skip


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


async def test_children_get_no_secrets_of_the_control_plane(
    make_control: MakeControl,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    control = await make_control(route_hold_s=0)
    spec = {
        "name": "e",
        "scaling": {"max_workers": 1, "target_util": 1.0, "max_queue_time": 0},
        "template": {
            # A null worker with a sidecar: both processes are launched from the template.
            "model_command": [sys.executable, "-c", "import time; time.sleep(600)"],
            "env": {"BACKEND": "null", "VESPID_LOG_LEVEL": "warning", "FOR_WORKER": "w"},
            "model_env": {"FOR_MODEL": "m"},
        },
    }
    _, ep = await admin(http, control, "POST", "/api/v0/endpoints", spec)
    async with http.post(
        control.url + "/route/", json={"endpoint": "e", "api_key": ep["api_key"], "cost": 1}
    ) as resp:
        assert resp.status == 200
    await wait_until(lambda: any(w.phase is WorkerPhase.READY
                                 for w in control.fleet.workers.values()), 30)  # fmt: skip
    [record] = control.fleet.workers.values()
    sidecar_pgid, worker_pgid = record.handle.info["pgids"]
    sidecar = await asyncio.to_thread(_environ, sidecar_pgid)
    worker = await asyncio.to_thread(_environ, worker_pgid)
    for env in (sidecar, worker):
        for name in SECRETS:
            assert name not in env, name
        assert env["PATH"] == os.environ["PATH"]  # the allow-list passes
    assert (sidecar["FOR_MODEL"], "FOR_WORKER" in sidecar) == ("m", False)
    assert (worker["FOR_WORKER"], "FOR_MODEL" in worker) == ("w", False)
    assert worker["MASTER_TOKEN"] == control.keys.worker_token(record.worker_id)


async def test_a_restart_signals_only_its_own_process_groups(
    make_control: MakeControl,
    tmp_path: Path,
) -> None:
    """The store names two groups an earlier run started: one whose leader is someone
    else's process now (same pid, other start time), one still the same process."""
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import time; time.sleep(600)", start_new_session=True
        )
        for _ in range(2)
    ]
    try:
        stranger, ours = procs
        started = await asyncio.to_thread(process_start_time, ours.pid)
        state = tmp_path / "state"
        store = SQLiteStore(state / "vespid.db")
        infos: list[dict[str, Any]] = [
            {"pgids": [stranger.pid], "pgid_starts": [1]},
            {"pgids": [ours.pid], "pgid_starts": [started]},
            {"pgids": [stranger.pid]},  # a record with no time
        ]
        for worker_id, info in enumerate(infos, start=1):
            await store.put_worker(
                WorkerHandle(worker_id, "e", "http://127.0.0.1:1", time.time(), info=info)
            )
        await store.close()
        await make_control(state_dir=state)
        async with asyncio.timeout(20):
            assert await ours.wait() == -signal.SIGTERM
        assert stranger.returncode is None  # left alone
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
