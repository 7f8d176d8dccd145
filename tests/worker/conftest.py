"""Worker fixtures: a worker in this process on a real port, its autoscaler, its backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from blockbuster import BlockBuster, blockbuster_ctx

from tests.support.servers import Autoscaler, ScriptedBackend, start_app
from vespid.servers.process import ChildProcess, free_port, wait_http
from vespid.worker.app import Worker
from vespid.worker.lifecycle import WorkerState
from vespid.worker.serve import ServedWorker, running_worker
from vespid.worker.settings import load_worker_settings


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    """Fail any test whose event loop makes a blocking call."""
    with blockbuster_ctx(scanned_modules=["vespid", "tests"]) as bb:
        yield bb


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves tasks running after its fixtures are torn down."""
    yield
    current = asyncio.current_task()
    for _ in range(10):
        leftover = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        if not leftover:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"tasks left running: {leftover}")


@dataclass
class RunningWorker:
    """A worker served as ``vespid worker`` serves it, on 127.0.0.1."""

    served: ServedWorker

    @property
    def worker(self) -> Worker:
        return self.served.worker

    @property
    def port(self) -> int:
        return self.served.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_state(self, state: WorkerState, timeout_s: float = 15.0) -> None:
        life = self.worker.lifecycle
        event = asyncio.Event()
        life.on_change.append(event)
        try:
            async with asyncio.timeout(timeout_s):
                while life.state is not state:
                    event.clear()
                    await event.wait()
        finally:
            life.on_change.remove(event)


MakeWorker = Callable[..., Awaitable[RunningWorker]]


@pytest.fixture
async def autoscaler() -> AsyncIterator[tuple[Autoscaler, str]]:
    scaler = Autoscaler()
    async with start_app(scaler.app()) as url:
        yield scaler, url


@pytest.fixture
async def backend() -> AsyncIterator[tuple[ScriptedBackend, str]]:
    stand_in = ScriptedBackend()
    async with start_app(stand_in.app(), handler_cancellation=True) as url:
        yield stand_in, url
        stand_in.release.set()


@pytest.fixture
async def make_worker(tmp_path: Path) -> AsyncIterator[MakeWorker]:
    """Factory: start a worker with the given environment; waits for ready unless told not to."""
    async with AsyncExitStack() as stack:

        async def make(wait_ready: bool = True, **env: str) -> RunningWorker:
            full_env = {
                "WORKER_PORT": "0",
                "VESPID_HOST": "127.0.0.1",
                "VESPID_CACHE_DIR": str(tmp_path / "cache"),
                "VESPID_LOG_LEVEL": "warning",
                # Tests' callback receivers listen on loopback, which a worker calls only
                # when the operator allows it (tests/security set it back to empty).
                "VESPID_ON_CLOSE_HOSTS": "127.0.0.1",
                **env,
            }
            settings = load_worker_settings(full_env)
            running = RunningWorker(await stack.enter_async_context(running_worker(settings)))
            if wait_ready:
                await running.wait_state(WorkerState.READY)
            return running

        yield make


@pytest.fixture
def make_signed_worker(
    make_worker: MakeWorker,
    autoscaler: tuple[Autoscaler, str],
    backend: tuple[ScriptedBackend, str],
) -> MakeWorker:
    """Factory: a worker before the scripted backend that checks signatures against the
    autoscaler stand-in's key and reports to it, with a known throughput (no benchmark);
    ``env`` adds or overrides settings."""
    _, scaler_url = autoscaler
    _, backend_url = backend

    async def make(wait_ready: bool = True, **env: str) -> RunningWorker:
        defaults = {"BACKEND_URL": backend_url, "REPORT_ADDR": scaler_url, "VESPID_MAX_PERF": "100"}
        return await make_worker(wait_ready, **{**defaults, **env})

    return make


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def envelope(auth: dict[str, Any], payload: Any, **extra: Any) -> dict[str, Any]:
    return {"auth_data": auth, "payload": payload, **extra}


@pytest.fixture
async def vllm_process() -> AsyncIterator[tuple[ChildProcess, str]]:
    """The vLLM stand-in as its own process (sleep routes too), and its URL."""
    port = free_port()
    server = ChildProcess.python("vllm", "-m", "vespid.testing.vllm", "--port", str(port))
    await server.start()
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_http(url + "/health", timeout_s=30, proc=server)
        yield server, url
    finally:
        await server.stop()
