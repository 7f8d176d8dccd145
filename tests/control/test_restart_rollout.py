"""A rollout survives a restart of the control plane: its state and the last good
template are kept in the store. End to end, a ``vespid control`` subprocess with
local-process workers in front of the TGI stand-in is restarted (SIGTERM) while a
rollout to a broken revision is halted: the next run keeps it halted, and the worker it
starts is on the last good template, not the broken one again. The store's half is
tested on the store and ``Rollouts`` themselves."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.control.test_restart import ADMIN_KEY, ControlRun, _when, wait_for
from tests.control.test_rollout_e2e import ENDPOINT
from vespid.control.models import EndpointConfig, WorkerTemplate
from vespid.control.policy_types import Decision, ScalingConfig, ScalingSnapshot, WorkerPhase
from vespid.control.policy_types import WorkerView as View
from vespid.control.rollouts import Rollouts
from vespid.control.store import SQLiteStore
from vespid.servers.process import free_port

HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}
BROKEN = [sys.executable, "-c", "raise SystemExit(3)"]


async def call(
    http: aiohttp.ClientSession, run: ControlRun, method: str, path: str, body: Any = None
) -> Any:
    async with http.request(method, run.url + path, json=body, headers=HEADERS) as resp:
        assert resp.status in (200, 201), await resp.text()
        return await resp.json()


async def rollout(http: aiohttp.ClientSession, run: ControlRun) -> dict[str, Any]:
    answer: dict[str, Any] = await call(http, run, "GET", "/api/v0/endpoints/tgi/rollout")
    return answer


async def test_a_halted_rollout_stays_halted_across_a_restart(tmp_path: Path) -> None:
    run = ControlRun(tmp_path / "state", free_port(), tmp_path)
    async with aiohttp.ClientSession() as http:
        await run.start()
        try:
            await call(http, run, "POST", "/api/v0/endpoints", ENDPOINT)
            workers = await wait_for(
                lambda h: _when(run.ready_workers(h), lambda w: len(w) == 2), 90, http
            )
            # Revision 2 cannot start: its first worker fails, and the rollout halts.
            await call(http, run, "PUT", "/api/v0/endpoints/tgi",
                       {"template": {"model_command": BROKEN}})  # fmt: skip
            halted = await wait_for(
                lambda h: _when(rollout(h, run), lambda r: r["state"] == "halted"), 90, http
            )
            assert run.proc is not None
            await run.proc.stop()  # SIGTERM: the workers run on

            await run.start(VESPID_STOP_WORKERS_ON_EXIT="true")
            assert await wait_for(
                lambda h: _when(run.ready_workers(h), lambda w: len(w) == 2), 60, http
            ) == workers  # fmt: skip
            assert await rollout(http, run) == halted
            # One more worker wanted: it starts on revision 1, the last good template.
            await call(http, run, "PUT", "/api/v0/endpoints/tgi", {"scaling": {"min_load": 300}})
            after = await wait_for(
                lambda h: _when(run.ready_workers(h), lambda w: len(w) == 3), 90, http
            )
            status = await run.status(http)
            still = await rollout(http, run)
        finally:
            if run.proc is not None:
                await run.proc.stop()
    [endpoint] = status["endpoints"]
    assert endpoint["revision"] == 2
    assert {w["revision"] for w in endpoint["workers"]} == {1}
    assert still == {**halted, "workers": {"1": {"ready": 3}}}  # the same halt, its reason
    started = [e["worker_id"] for e in status["scaling_log"] if e["action"] == "start"]
    assert len(started) == 1  # the third worker, on revision 1: not one on revision 2
    assert set(started) <= set(after)


def endpoint_at(revision: int, tag: str, previous: str | None = None) -> EndpointConfig:
    def template(t: str) -> WorkerTemplate:
        return WorkerTemplate(env={"TAG": t})

    return EndpointConfig(
        name="e", api_key="e-api-key", revision=revision, template=template(tag),
        previous_template=None if previous is None else template(previous),
    )  # fmt: skip


def snap(revision: int, *workers: View) -> ScalingSnapshot:
    return ScalingSnapshot(now=1000.0, params=ScalingConfig(), workers=workers, revision=revision)


def keep(target: int) -> Decision:
    return Decision(target_active=target, target_cold=0, stop=(), start=0, reason="p")


def ready(wid: str, revision: int) -> View:
    return View(wid, WorkerPhase.READY, max_perf=100.0, revision=revision)


async def test_the_store_keeps_a_halted_rollout_and_the_last_good_template(
    tmp_path: Path,
) -> None:
    """Revision 2 (tag b) is good; 3 and then 4 are broken. After a restart the rollout
    to 4 is still halted, and new workers start on revision 2's template, which is
    neither the endpoint's nor its previous one."""
    store = SQLiteStore(tmp_path / "vespid.db")
    rollouts = Rollouts(store)
    await store.put_endpoint(endpoint_at(4, "d", previous="c"))
    rollouts.step(endpoint_at(2, "b"), snap(2, ready("1", 2)), keep(1))  # done: 2 is good
    failed = View("2", WorkerPhase.ERRORED, revision=4, failed_before_ready=True)
    rollouts.step(endpoint_at(4, "d", "c"), snap(4, ready("1", 2), failed), keep(1))
    await rollouts.save()
    await store.close()

    store = SQLiteStore(tmp_path / "vespid.db")
    again = Rollouts(store)
    await again.load({"e": endpoint_at(4, "d", "c")})
    assert again.states == rollouts.states
    _, ordered = again.step(endpoint_at(4, "d", "c"), snap(4, ready("1", 2)), keep(2))
    assert (ordered.revision, ordered.template.env) == (2, {"TAG": "b"})
    # A rollout goes with its endpoint, and one of an endpoint that is gone is not kept.
    await store.delete_endpoint("e")
    await store.put_rollout("gone", {"revision": 1})
    assert await store.rollouts() == {}
    await store.close()


async def test_a_kept_rollout_that_does_not_load_starts_afresh(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "vespid.db")
    await store.put_endpoint(endpoint_at(2, "b"))
    await store.put_rollout("e", {"revision": "two"})
    rollouts = Rollouts(store)
    await rollouts.load({"e": endpoint_at(2, "b")})
    await store.close()
    assert rollouts.states == {}
