"""``POST /pyworker/update``: only with the master token, then drain and exit."""

from __future__ import annotations

import asyncio
import sys

import aiohttp

from tests.support.servers import ScriptedBackend
from tests.worker.conftest import MakeWorker
from vespid.servers.process import free_port, wait_http


async def test_update_needs_the_master_token(
    make_worker: MakeWorker, backend: tuple[ScriptedBackend, str], http: aiohttp.ClientSession
) -> None:
    _, backend_url = backend
    open_worker = await make_worker(BACKEND_URL=backend_url, UNSECURED="true", VESPID_MAX_PERF="1")
    async with http.post(open_worker.url + "/pyworker/update",
                         headers={"Authorization": "Bearer "}) as resp:  # fmt: skip
        assert resp.status == 401  # no MASTER_TOKEN: never an open door
        assert "no MASTER_TOKEN" in (await resp.json())["error"]
    assert not open_worker.worker.update.is_set()
    worker = await make_worker(
        BACKEND_URL=backend_url, UNSECURED="true", VESPID_MAX_PERF="1", MASTER_TOKEN="s3cret!"
    )
    async with http.post(worker.url + "/pyworker/update",
                         headers={"Authorization": "Bearer wrong"}) as resp:  # fmt: skip
        assert resp.status == 401
    async with http.post(worker.url + "/pyworker/update",
                         headers={"Authorization": "Bearer s3cret!"}) as resp:  # fmt: skip
        assert (resp.status, await resp.json()) == (202, {"updating": True})
    assert worker.worker.update.is_set()


async def test_update_drains_and_exits(
    backend: tuple[ScriptedBackend, str], http: aiohttp.ClientSession
) -> None:
    _, backend_url = backend
    port = free_port()
    env = {"BACKEND_URL": backend_url, "UNSECURED": "true", "VESPID_MAX_PERF": "1",
           "MASTER_TOKEN": "tok-123", "WORKER_PORT": str(port), "VESPID_HOST": "127.0.0.1",
           "WORKER_HTTP_PORT": str(free_port()), "VESPID_LOG_LEVEL": "warning"}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "vespid.worker", env=env)
    try:
        await wait_http(f"http://127.0.0.1:{port}/metrics", timeout_s=30)
        async with http.post(f"http://127.0.0.1:{port}/pyworker/update",
                             headers={"Authorization": "Bearer tok-123"}) as resp:  # fmt: skip
            assert resp.status == 202
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
