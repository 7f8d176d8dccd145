"""The Ray provider on a real cluster of ``ray start`` nodes on this machine.

- Two nodes (a head with 2 GPUs, a second node with 1, both declared): a control plane
  joined to the cluster spreads its two llama.cpp workers over both, each reports to the
  control plane's public URL, both serve requests through the client SDK; the second
  node is then stopped (its process tree, by pid) under load: its worker is replaced on
  the head, and no request fails (the client retries).
- Re-adoption: a control plane's Ray side starts two workers and is killed (no clean
  stop); its detached actors live on, a new provider adopts the one it is asked to
  (only the very actor recorded: a forged actor id is refused and left alone), cleanup
  stops the other, and an actor whose worker exits ends by itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.control.conftest import admin
from tests.control.ray_cluster import RAY_ENV, RayNode, RayStartFailed, handle_from_json, running
from tests.control.test_faults_e2e import in_flight
from tests.control.test_scaling_e2e import llama_endpoint
from tests.support.waiting import wait_until
from vespid.client import Client
from vespid.control.policy import WorkerPhase
from vespid.control.providers.base import RunState, WorkerHandle
from vespid.control.providers.ray import RAY_NAMESPACE, RayProvider
from vespid.control.serve import running_control
from vespid.control.settings import ControlSettings
from vespid.servers.process import free_port

ray = pytest.importorskip("ray", reason="the ray package is not installed")


@pytest.fixture(scope="module")
def ray_head() -> Iterator[RayNode]:
    """The head of a one-machine cluster, declaring 2 GPUs, for this module's tests."""
    temp = Path(tempfile.mkdtemp(prefix="vray", dir="/tmp"))  # Ray's socket paths stay short
    try:
        try:
            head = RayNode.start(
                temp / "head.log", "--head", f"--port={free_port()}", "--num-gpus=2",
                "--include-dashboard=false", f"--dashboard-port={free_port()}",
                f"--temp-dir={temp}",
            )  # fmt: skip
        except RayStartFailed as exc:
            pytest.skip(f"Ray cannot start a node here: {exc}")
        try:
            yield head
        finally:
            head.stop()
    finally:
        shutil.rmtree(temp, ignore_errors=True)


async def _running(pids: list[int]) -> list[bool]:
    return await asyncio.to_thread(lambda: [running(pid) for pid in pids])


async def _any_running(pids: list[int]) -> bool:
    return any(await _running(pids))


async def _actor_exists(name: str) -> bool:
    try:
        await asyncio.to_thread(ray.get_actor, name, RAY_NAMESPACE)
    except ValueError:
        return False
    return True


async def _other_drivers_gone() -> bool:
    """Whether Ray counts every driver but this process's as gone (so the actors they
    owned, unless detached, are gone with them)."""
    me = ray.get_runtime_context().get_job_id()
    jobs: list[dict[str, Any]] = await asyncio.to_thread(ray._private.state.jobs)
    return all(job["IsDead"] for job in jobs if job["JobID"] != me)


async def _crashed_control_plane(address: str, log_dir: Path, count: int) -> list[WorkerHandle]:
    """Start ``count`` workers from another process, then kill it (SIGKILL)."""
    driver = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.control.ray_cluster", address, str(log_dir), str(count),
        stdout=asyncio.subprocess.PIPE, env={**os.environ, **RAY_ENV},
    )  # fmt: skip
    try:
        assert driver.stdout is not None
        async with asyncio.timeout(120):
            return [handle_from_json(await driver.stdout.readline()) for _ in range(count)]
    finally:
        driver.kill()
        await driver.wait()


async def test_detached_workers_are_adopted_after_a_crash(
    ray_head: RayNode, tmp_path: Path
) -> None:
    address = ray_head.address
    kept, other = await _crashed_control_plane(address, tmp_path / "logs", 2)
    provider = RayProvider(tmp_path / "logs", address=address)
    try:
        await provider.open()
        await wait_until_async(_other_drivers_gone, timeout_s=60)
        # The dead driver's actors were detached: both workers still run.
        for handle in (kept, other):
            assert await _actor_exists(handle.info["ray_actor"])
            assert await _running(handle.info["pgids"]) == [True]

        # An actor of that name that is not the recorded one is neither adopted nor stopped.
        forged = dataclasses.replace(other, info={**other.info, "ray_actor_id": "f" * 32})
        assert not await provider.adopt(forged)
        await provider.cleanup(forged.info)
        assert await _running(other.info["pgids"]) == [True]

        assert await provider.adopt(kept)
        assert provider.state(kept) is RunState.RUNNING
        await provider.cleanup(other.info)  # not adopted: its actor and processes stop
        assert not await _actor_exists(other.info["ray_actor"])
        await wait_until_async(lambda: _any_running(other.info["pgids"]), 30, want=False)

        # The adopted worker exits (as one whose control plane stays away does): its
        # actor ends by itself, and the provider counts the worker exited.
        [worker_pgid] = kept.info["pgids"]
        os.kill(worker_pgid, 9)
        await wait_until(lambda: provider.state(kept) is RunState.EXITED, timeout_s=30)
        name = kept.info["ray_actor"]
        await wait_until_async(lambda: _actor_exists(name), timeout_s=30, want=False)
    finally:
        await provider.close()


async def wait_until_async(
    check: Callable[[], Awaitable[bool]], timeout_s: float, want: bool = True
) -> None:
    """Re-run ``check`` until it answers ``want``; TimeoutError after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while await check() != want:  # noqa: ASYNC110 - asking Ray, which offers no event
            await asyncio.sleep(0.1)


async def test_workers_spread_over_two_nodes_and_move_when_one_goes(
    ray_head: RayNode, http: aiohttp.ClientSession, tiny_model: Path, tmp_path: Path
) -> None:
    second = await asyncio.to_thread(
        RayNode.start, ray_head.log_path.with_name("second.log"),
        f"--address={ray_head.address}", "--num-gpus=1",
    )  # fmt: skip
    try:
        port = free_port()
        settings = ControlSettings(
            host="127.0.0.1", port=port, public_url=f"http://127.0.0.1:{port}",
            state_dir=tmp_path / "state", scale_interval_s=0.1, log_level="warning",
            provider="ray", ray_address=ray_head.address,
        )  # fmt: skip
        async with running_control(settings, os.environ) as control:
            await _two_nodes_then_one(control, second, http, tiny_model)
    finally:
        await asyncio.to_thread(second.stop)


async def _two_nodes_then_one(
    control: Any, second: RayNode, http: aiohttp.ClientSession, tiny_model: Path
) -> None:
    nodes = {n["NodeID"] for n in await asyncio.to_thread(ray.nodes) if n["Alive"]}
    assert len(nodes) == 2
    spec = llama_endpoint(tiny_model, min_load=200, max_workers=2)
    spec["template"]["gpus_per_worker"] = 1
    _, ep = await admin(http, control, "POST", "/api/v0/endpoints", spec)

    def ready() -> dict[int, Any]:
        return {w.worker_id: w for w in control.fleet.workers.values()
                if w.phase is WorkerPhase.READY}  # fmt: skip

    await wait_until(lambda: len(ready()) == 2, timeout_s=90)  # READY: their reports came
    placed = {w.handle.info["ray_node_id"]: w for w in ready().values()}
    assert set(placed) == nodes  # one worker on each node
    head_node = ray.get_runtime_context().get_node_id()  # this driver joined the head
    victim = next(w for node, w in placed.items() if node != head_node)
    assert victim.handle.gpus == ("0",)  # the second node's one GPU

    async with Client(control.url, ep["api_key"], timeout_s=90) as client:
        endpoint = await client.get_endpoint("llm")
        served: Counter[int] = Counter()
        by_url = {w.url: w.worker_id for w in control.fleet.workers.values()}

        async def one(i: int) -> int:
            resp = await endpoint.request(
                "/v1/completions", {"prompt": f"request {i}", "max_tokens": 32}, cost=5
            )
            body = await resp.json()
            assert body["usage"]["completion_tokens"] == 32
            served[by_url.get(resp.worker_url, 0)] += 1
            return resp.status

        assert await asyncio.gather(*(one(i) for i in range(6))) == [200] * 6
        assert set(served) == set(ready())  # both nodes' workers served

        # Steady load (four callers back to back) until the victim is seen serving, then
        # the second machine goes away, and 16 more answers come after that.
        statuses: list[int] = []
        stop_load = asyncio.Event()

        async def keep_sending(caller: int) -> None:
            while not stop_load.is_set():
                statuses.append(await one(caller))

        loaders = [asyncio.create_task(keep_sending(i)) for i in range(4)]
        async with asyncio.timeout(60):
            while await in_flight(http, victim.url) < 1:  # noqa: ASYNC110 - scraping a gauge
                await asyncio.sleep(0.005)
        gone = await asyncio.to_thread(second.stop)  # the second machine goes away
        after = len(statuses)
        await wait_until(lambda: len(statuses) >= after + 16, timeout_s=90)
        stop_load.set()
        await asyncio.gather(*loaders)  # a failed call raises here
        assert statuses == [200] * len(statuses)  # none lost (the client retried)

    assert not await _any_running([*gone, *victim.handle.info["pgids"]])
    await wait_until(lambda: victim.worker_id not in control.fleet.workers, timeout_s=60)
    await wait_until(lambda: len(ready()) == 2, timeout_s=90)  # replaced, on the head
    assert {w.handle.info["ray_node_id"] for w in ready().values()} == {head_node}
