"""A rolling update on 127.0.0.1: a real control plane, local-process workers in front of
the TGI stand-in, steady load through the client SDK, and ``vespid endpoint update
--wait`` / ``rollback --wait`` as real subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

import aiohttp

from tests.control.conftest import MakeControl, admin
from tests.support.waiting import wait_until
from vespid.client import Client
from vespid.control.app import ControlPlane
from vespid.control.policy import WorkerPhase

ENV = {"HEALTHCHECK_ENDPOINT": "/health", "VESPID_MAX_PERF": "100", "VESPID_LOG_LEVEL": "warning"}
TGI = ["python", "-m", "vespid.testing.tgi", "--port", "{model_port}"]
ENDPOINT: dict[str, Any] = {
    "name": "tgi",
    # min_load 200 at 100 workload/s per worker keeps two workers whatever the load.
    "scaling": {"min_load": 200, "max_workers": 3, "target_util": 1.0, "inactivity_timeout": 0},
    "template": {"model_command": TGI, "env": {**ENV, "ROLLOUT_TAG": "a"}, "ready_timeout": 60},
}


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vespid.cli.main", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 150)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def revisions(control: ControlPlane) -> dict[int, list[str]]:
    """Live workers' phases by revision."""
    by: dict[int, list[str]] = {}
    for w in control.fleet.workers.values():
        by.setdefault(w.handle.revision, []).append(w.phase.value)
    return by


async def test_rolling_update_under_load_then_a_broken_revision_halts_and_rollback(
    make_control: MakeControl, http: aiohttp.ClientSession
) -> None:
    control = await make_control()
    _, ep = await admin(http, control, "POST", "/api/v0/endpoints", ENDPOINT)
    assert ep["revision"] == 1

    def ready() -> int:
        return sum(w.phase is WorkerPhase.READY for w in control.fleet.workers.values())

    await wait_until(lambda: ready() == 2, timeout_s=90)
    base = ["endpoint", "--url", control.url, "--admin-key", control.admin_key]
    outcomes: list[int] = []
    stop = asyncio.Event()

    async with Client(control.url, ep["api_key"], timeout_s=60) as client:
        endpoint = await client.get_endpoint("tgi")

        async def load() -> None:  # one request after another, bounded by the stop
            body = {"inputs": "hello", "parameters": {"max_new_tokens": 4}}
            while not stop.is_set():
                try:
                    resp = await endpoint.request("/generate", body, cost=4)
                    await resp.read()
                    outcomes.append(resp.status)
                except Exception:
                    outcomes.append(0)

        loaders = [asyncio.create_task(load()) for _ in range(3)]
        try:
            # A template change: revision 2, rolled out under load.
            code, _, err = await cli(*base, "update", "tgi", "--wait", "--model-command",
                                       " ".join(TGI), "--env", "ROLLOUT_TAG=b",
                                       *(f"--env={k}={v}" for k, v in ENV.items()))  # fmt: skip
            assert code == 0, err
            assert "revision 2: done" in err
            assert set(revisions(control)) == {2}
            served_during_update = len(outcomes)

            # A broken revision: its model server exits, so the rollout halts.
            code, _, err = await cli(*base, "update", "tgi", "--wait", "--model-command",
                                     "python -c raise(SystemExit(3))")  # fmt: skip
            assert code == 1
            assert "rollout of tgi to revision 3 halted: worker" in err
            status = await (await http.get(control.url + "/api/v0/status")).json()
            rollout = status["endpoints"][0]["rollout"]
            assert rollout["state"] == "halted"
            assert rollout["good_revision"] == 2
            # The old workers keep serving, and stay.
            before = len(outcomes)
            await wait_until(lambda: len(outcomes) >= before + 10, timeout_s=30)
            assert 2 in revisions(control)
            assert ready() >= 2

            # Back to revision 2's template, as revision 4.
            code, _, err = await cli(*base, "rollback", "tgi", "--wait")
            assert code == 0, err
            assert "revision 4: done" in err
            assert set(revisions(control)) == {4}
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.gather(*loaders)

    assert served_during_update > 0
    assert outcomes.count(200) == len(outcomes)  # not one request failed
    endpoint_now = control.endpoints["tgi"]
    assert endpoint_now.revision == 4
    assert endpoint_now.template.env["ROLLOUT_TAG"] == "b"
    actions = {e["action"] for e in control.scaling_log}
    assert {"start", "drain", "stop"} <= actions
