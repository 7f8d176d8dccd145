"""A control-plane restart does not restart the fleet: ``vespid control`` as a subprocess
with a state dir, two llama.cpp workers, steady load through the client SDK.

Restarted (SIGTERM, or ``kill -9``) under that load, the next run adopts both workers:
no request fails (the client asks the router again while it is down), no worker is
started, and the same workers serve afterwards. Killed for good, every worker and model
server stops itself within its orphan bound.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.control.conftest import MakeControl, admin
from tests.control.test_scaling_e2e import llama_endpoint
from vespid.client import Client
from vespid.control.app import ControlPlane
from vespid.control.fleet import WorkerRecord
from vespid.control.policy import ScalingConfig, WorkerPhase
from vespid.control.policy_stages import expire_starting
from vespid.control.providers.base import RunState, WorkerHandle
from vespid.control.store import SQLiteStore
from vespid.protocol.wire import WorkerStatusReport
from vespid.servers.process import ChildProcess, free_port, same_process, wait_http

ADMIN_KEY = "restart-test-admin-key"
# An endpoint that neither starts nor stops workers of its own accord.
PARKED_SPEC = {"name": "e", "scaling": {"max_workers": 1, "inactivity_timeout": 0,
                                        "scale_down_delay": 3600}}  # fmt: skip


@dataclass
class ControlRun:
    """One ``vespid control`` process on a fixed port and state dir."""

    state: Path
    port: int
    logs: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: ChildProcess | None = None
    runs: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, **env: str) -> None:
        self.runs += 1
        self.proc = ChildProcess.python(
            "vespid control", "-m", "vespid.cli.main", "control",
            env={"VESPID_CONTROL_PORT": str(self.port), "VESPID_STATE_DIR": str(self.state),
                 "VESPID_ADMIN_KEY": ADMIN_KEY, "VESPID_SCALE_INTERVAL_S": "0.1",
                 "VESPID_LOG_LEVEL": "info", **self.env, **env},
            log_path=self.logs / f"control-{self.runs}.log",
        )  # fmt: skip
        await self.proc.start()
        await wait_http(self.url + "/pubkey/", timeout_s=60, proc=self.proc)

    async def status(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        async with http.get(self.url + "/api/v0/status") as resp:
            assert resp.status == 200
            data: dict[str, Any] = await resp.json()
            return data

    async def ready_workers(self, http: aiohttp.ClientSession) -> dict[int, str]:
        """Worker id -> url of the READY workers that have reported their throughput."""
        [endpoint] = (await self.status(http))["endpoints"]
        return {
            w["worker_id"]: w["url"]
            for w in endpoint["workers"]
            if w["state"] == "ready" and w["max_perf"]
        }

    def kept_processes(self) -> list[tuple[int, int]]:
        """(pid, start time) of every process group leader the store names."""
        with sqlite3.connect(f"file:{self.state / 'vespid.db'}?mode=ro", uri=True) as conn:
            rows = conn.execute("SELECT info FROM workers").fetchall()
        conn.close()
        kept = []
        for (text,) in rows:
            info = json.loads(text)["info"]
            kept += list(zip(info["pgids"], info["pgid_starts"], strict=True))
        return kept


async def wait_for(check: Any, timeout_s: float, http: aiohttp.ClientSession) -> Any:
    """Poll ``await check(http)`` until it is truthy; TimeoutError after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while not (value := await check(http)):  # noqa: ASYNC110 - polling HTTP
            await asyncio.sleep(0.1)
        return value


def running(processes: list[tuple[int, int]]) -> list[int]:
    return [pid for pid, started in processes if same_process(pid, started)]


async def wait_gone(processes: list[tuple[int, int]], timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while await asyncio.to_thread(running, processes):  # noqa: ASYNC110 - /proc
            await asyncio.sleep(0.1)


def stop_left(processes: list[tuple[int, int]]) -> None:
    """SIGKILL every process group still led by one of ``processes`` (a failed test's)."""
    for pid in running(processes):
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


@asynccontextmanager
async def control_with_workers(
    tmp_path: Path, tiny_model: Path, http: aiohttp.ClientSession, **env: str
) -> AsyncIterator[tuple[ControlRun, str, dict[int, str]]]:
    """A control plane with the llama endpoint and its two workers READY; at the end,
    the control plane and every worker process it kept are stopped."""
    run = ControlRun(tmp_path / "state", free_port(), tmp_path, env=env)
    kept: list[tuple[int, int]] = []
    await run.start()
    try:
        # The default policy: reservoir mode, idle workers parked rather than stopped.
        spec = llama_endpoint(
            tiny_model, min_load=40, inactivity_timeout=0,
            reservoir_workers=ScalingConfig().reservoir_workers,
        )  # fmt: skip
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        async with http.post(run.url + "/api/v0/endpoints", json=spec, headers=headers) as resp:
            assert resp.status == 201, await resp.text()
            api_key = (await resp.json())["api_key"]
        workers = await wait_for(
            lambda h: _when(run.ready_workers(h), lambda w: len(w) == 2), 90, http
        )
        kept = await asyncio.to_thread(run.kept_processes)
        yield run, api_key, workers
    finally:
        if run.proc is not None:
            await run.proc.stop()
        kept += await asyncio.to_thread(run.kept_processes)
        await asyncio.to_thread(stop_left, kept)


async def _when(value: Any, accept: Any) -> Any:
    got = await value
    return got if accept(got) else None


@dataclass
class Load:
    """Requests sent back to back by a few tasks through the SDK, until stopped."""

    ok: list[tuple[float, str]] = field(default_factory=list)  # (finished at, worker url)
    failed: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, url: str, api_key: str, senders: int = 3) -> None:
        async with Client(url, api_key, timeout_s=60) as client:
            endpoint = await client.get_endpoint("llm")

            async def send(n: int) -> None:
                i = 0
                while not self.stop.is_set():
                    i += 1
                    try:
                        resp = await endpoint.request(
                            "/v1/completions", {"prompt": f"load {n} {i}", "max_tokens": 8},
                            cost=5,
                        )  # fmt: skip
                        body = await resp.json()
                        assert body["usage"]["completion_tokens"] == 8
                        self.ok.append((time.monotonic(), resp.worker_url))
                    except Exception as exc:  # every failure is counted, none ends the load
                        self.failed.append(f"{type(exc).__name__}: {exc}")

            await asyncio.gather(*(send(n) for n in range(senders)))

    def served_since(self, since: float) -> list[str]:
        return [url for at, url in self.ok if at > since]


async def served(load: Load, since: float, count: int, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while len(load.served_since(since)) < count:  # noqa: ASYNC110 - counting answers
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("how", ["sigterm", "kill -9"])
async def test_a_restart_under_load_keeps_the_fleet(
    tmp_path: Path, tiny_model: Path, how: str
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        control_with_workers(tmp_path, tiny_model, http) as (run, api_key, workers),
    ):
        load = Load()
        sending = asyncio.create_task(load.run(run.url, api_key))
        try:
            await served(load, 0.0, 10, timeout_s=60)
            assert run.proc is not None
            if how == "sigterm":
                await run.proc.stop()  # leaves its workers running (the default)
            else:
                run.proc.kill()
                await run.proc.stop()  # reaps it
            down_at = time.monotonic()
            # The next run stops its workers when it stops: the test leaves no process.
            await run.start(VESPID_STOP_WORKERS_ON_EXIT="true")
            after = await wait_for(
                lambda h: _when(run.ready_workers(h), lambda w: len(w) == 2), 60, http
            )
            await served(load, down_at, 20, timeout_s=60)
        finally:
            load.stop.set()
            await sending
        status = await run.status(http)
    assert load.failed == []
    assert after == workers  # the same worker ids, at the same urls
    assert set(load.served_since(down_at)) == set(workers.values())
    assert [e for e in status["scaling_log"] if e["action"] == "start"] == []  # no cold start


async def test_a_worker_parked_at_the_restart_is_adopted_parked_and_woken_on_demand(
    tmp_path: Path, tiny_model: Path
) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with (
        aiohttp.ClientSession() as http,
        control_with_workers(tmp_path, tiny_model, http) as (run, api_key, workers),
    ):
        # One worker's throughput is wanted now: the other is parked (reservoir mode).
        body = {"scaling": {"min_load": 20, "scale_down_delay": 0}}
        async with http.put(run.url + "/api/v0/endpoints/llm", json=body, headers=headers) as r:
            assert r.status == 200, await r.text()
        states = await wait_for(lambda h: _when(run_states(run, h), is_one_parked), 60, http)
        [parked] = [w for w, state in states.items() if state == "parked"]
        assert run.proc is not None
        await run.proc.stop()
        await run.start(VESPID_STOP_WORKERS_ON_EXIT="true")
        assert await wait_for(lambda h: _when(run_states(run, h), is_one_parked), 60, http) == (
            states
        )
        async with Client(run.url, api_key, timeout_s=60) as client:
            endpoint = await client.get_endpoint("llm")
            resp = await endpoint.request(
                "/v1/completions", {"prompt": "one", "max_tokens": 4}, cost=5
            )
            assert resp.worker_url != workers[parked]  # parked: not routed to
        load = Load()  # more than one worker's throughput: the parked one is woken
        sending = asyncio.create_task(load.run(run.url, api_key))
        try:
            await wait_for(lambda h: _when(run.ready_workers(h), lambda w: len(w) == 2), 60, http)
            woke_at = time.monotonic()
            await served(load, woke_at, 20, timeout_s=60)
        finally:
            load.stop.set()
            await sending
        status = await run.status(http)
    assert load.failed == []
    assert workers[parked] in load.served_since(woke_at)
    actions = [(e["action"], e["worker_id"]) for e in status["scaling_log"]]
    assert ("wake", parked) in actions
    assert [a for a in actions if a[0] == "start"] == []  # no cold start


async def run_states(run: ControlRun, http: aiohttp.ClientSession) -> dict[int, str]:
    [endpoint] = (await run.status(http))["endpoints"]
    return {w["worker_id"]: w["state"] for w in endpoint["workers"]}


def is_one_parked(states: dict[int, str]) -> bool:
    return sorted(states.values()) == ["parked", "ready"]


async def test_workers_of_a_control_plane_gone_for_good_stop_within_the_bound(
    tmp_path: Path, tiny_model: Path
) -> None:
    orphan_timeout_s = 3
    async with (
        aiohttp.ClientSession() as http,
        control_with_workers(
            tmp_path, tiny_model, http, VESPID_ORPHAN_TIMEOUT=str(orphan_timeout_s)
        ) as (run, _, _),
    ):
        kept = await asyncio.to_thread(run.kept_processes)
        assert len(kept) == 4  # two workers, two model servers
        assert run.proc is not None
        run.proc.kill()
        await run.proc.stop()
        # The bound: the orphan timeout, a report's retries, and the model server's stop
        # (SIGTERM, SIGKILL after 5 s).
        await wait_gone(kept, timeout_s=orphan_timeout_s + 15)


async def test_the_store_keeps_each_workers_whole_handle(tmp_path: Path) -> None:
    """What the next run needs to adopt a worker survives the store; a row kept by an
    older vespid (the provider's info alone) comes back with no url: never adopted."""
    store = SQLiteStore(tmp_path / "vespid.db")
    handle = WorkerHandle(
        7, "llm", "http://127.0.0.1:5000", 1700000000.5, gpus=("1",), revision=3,
        info={"pgids": [123, 124], "pgid_starts": [9, 10]},
    )  # fmt: skip
    await store.put_worker(handle)
    await store._run(
        "INSERT INTO workers (worker_id, endpoint, info) VALUES ('8', 'llm', ?)",
        (json.dumps({"pgids": [125], "pgid_starts": [11]}),),
    )
    kept = {h.worker_id: h for h in await store.workers()}
    await store.close()
    assert kept[7] == handle
    assert (kept[8].url, kept[8].info) == ("", {"pgids": [125], "pgid_starts": [11]})


async def adopt_kept(
    control: ControlPlane, monkeypatch: pytest.MonkeyPatch, handle: WorkerHandle, *,
    draining: bool,
) -> WorkerRecord:  # fmt: skip
    """``handle`` kept in the store (draining or not) and taken back as a restarted
    control plane does; the provider proves it its own (no process here to prove)."""
    await control.store.put_worker(handle)
    await control.store.set_draining(handle.worker_id, draining)
    monkeypatch.setattr(control.provider, "adopt", _adopted_anyway)
    monkeypatch.setattr(control.provider, "state", lambda handle: RunState.RUNNING)
    await control._readopt()
    return control.fleet.workers[handle.worker_id]


def phase_now(record: WorkerRecord) -> WorkerPhase:
    """The phase now (read through a call: mypy keeps an asserted phase narrowed)."""
    return record.phase


async def _adopted_anyway(handle: WorkerHandle) -> bool:
    return True


def status_report(worker_id: int, **fields: Any) -> WorkerStatusReport:
    return WorkerStatusReport.model_validate({"id": worker_id, "mtoken": "", **fields})


async def test_a_worker_draining_at_the_restart_is_adopted_draining(
    make_control: MakeControl, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    control = await make_control()
    await admin(http, control, "POST", "/api/v0/endpoints", PARKED_SPEC)
    handle = WorkerHandle(900, "e", "http://127.0.0.1:9", time.time() - 60, revision=1)
    record = await adopt_kept(control, monkeypatch, handle, draining=True)
    assert record.phase is WorkerPhase.DRAINING
    control.fleet.ingest(status_report(900, max_perf=10, cur_load=3))  # busy, and ready
    assert record.phase is WorkerPhase.DRAINING  # its report does not make it routable
    assert not control.router.candidates(control.endpoints["e"])
    assert await control.store.draining() == {900}
    control.fleet.remove(900)


async def test_a_worker_adopted_while_loading_counts_its_ready_timeout_from_adoption(
    make_control: MakeControl, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    control = await make_control()
    await admin(http, control, "POST", "/api/v0/endpoints", PARKED_SPEC)
    endpoint = control.endpoints["e"]
    # Started long before its ready timeout, and still loading at the restart.
    started = time.time() - 10 * endpoint.template.ready_timeout
    handle = WorkerHandle(901, "e", "http://127.0.0.1:9", started, revision=1)
    record = await adopt_kept(control, monkeypatch, handle, draining=False)
    control.fleet.ingest(status_report(901, loadtime=0))  # no max_perf: loading
    assert record.phase is WorkerPhase.STARTING
    snapshot = control.fleet.snapshot(endpoint, queued_load=0, queued_requests=0)
    assert expire_starting(snapshot)[1] == ()
    adopted_at = record.adopted_at
    assert adopted_at is not None
    assert record.view().started_at == adopted_at
    control.fleet.ingest(status_report(901, max_perf=10))
    assert phase_now(record) is WorkerPhase.READY
    assert record.ready_after_s is not None
    assert record.ready_after_s <= time.time() - adopted_at  # counted from its adoption
    control.fleet.remove(901)
