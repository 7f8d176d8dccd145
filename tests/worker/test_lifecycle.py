"""Readiness, health, the model log, and the benchmark with its cache."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp
import pytest

from tests.support import bench_funcs
from tests.support.servers import ScriptedBackend, start_app
from tests.worker.conftest import MakeWorker, envelope
from vespid.errors import ConfigError
from vespid.servers.process import free_port
from vespid.worker.lifecycle import WorkerState

AUTH = {"cost": 1, "endpoint": "e", "reqnum": 1, "request_idx": 1, "signature": "", "url": ""}


async def test_ready_soon_after_health_passes_and_early_requests_wait(
    make_worker: MakeWorker, backend: tuple[ScriptedBackend, str], http: aiohttp.ClientSession
) -> None:
    stand_in, backend_url = backend
    stand_in.healthy = False
    worker = await make_worker(
        wait_ready=False,
        BACKEND_URL=backend_url,
        UNSECURED="true",
        HEALTHCHECK_ENDPOINT="/health",
        VESPID_MAX_PERF="10",
    )
    early = asyncio.create_task(http.post(worker.url + "/echo", json=envelope(AUTH, {"early": 1})))
    await asyncio.sleep(0.3)  # several poll intervals pass while the backend is unhealthy
    assert worker.worker.lifecycle.state is WorkerState.LOADING
    assert not early.done()
    stand_in.healthy = True
    await worker.wait_state(WorkerState.READY, timeout_s=2)
    async with await early as resp:
        assert resp.status == 200
    assert worker.worker.lifecycle.loadtime_s is not None


async def test_request_gets_503_when_still_loading_after_the_wait(
    make_worker: MakeWorker, backend: tuple[ScriptedBackend, str], http: aiohttp.ClientSession
) -> None:
    stand_in, backend_url = backend
    stand_in.healthy = False
    worker = await make_worker(
        wait_ready=False,
        BACKEND_URL=backend_url,
        UNSECURED="true",
        HEALTHCHECK_ENDPOINT="/health",
        VESPID_READY_WAIT_S="0.2",
    )
    async with http.post(worker.url + "/echo", json=envelope(AUTH, {})) as resp:
        assert resp.status == 503
        body = await resp.json()
    assert body["code"] == "not_ready"
    assert body["state"] == "loading"


async def test_health_failure_marks_errored_and_recovery_clears_it(
    make_worker: MakeWorker, backend: tuple[ScriptedBackend, str], http: aiohttp.ClientSession
) -> None:
    stand_in, backend_url = backend
    worker = await make_worker(
        BACKEND_URL=backend_url,
        UNSECURED="true",
        HEALTHCHECK_ENDPOINT="/health",
        VESPID_MAX_PERF="10",
        VESPID_HEALTH_INTERVAL_S="0.05",
    )
    stand_in.healthy = False
    await worker.wait_state(WorkerState.ERRORED)
    assert "/health answered 503" in worker.worker.lifecycle.error_msg
    async with http.post(worker.url + "/echo", json=envelope(AUTH, {})) as resp:
        assert resp.status == 503
        assert "errored" in (await resp.json())["error"]
    stand_in.healthy = True
    await worker.wait_state(WorkerState.READY)


async def test_benchmark_waits_for_a_backend_that_starts_late(
    make_worker: MakeWorker, tmp_path: Path
) -> None:
    port = free_port()
    bench_funcs.calls.clear()
    worker = await make_worker(
        wait_ready=False,
        BACKEND_URL=f"http://127.0.0.1:{port}",
        UNSECURED="true",
        BENCHMARK="tests.support.bench_funcs:counting",
    )
    await asyncio.sleep(0.3)
    assert worker.worker.lifecycle.state is WorkerState.LOADING
    assert bench_funcs.calls == []  # never benchmarked a backend that refuses connections
    stand_in = ScriptedBackend()
    from aiohttp import web

    runner = web.AppRunner(stand_in.app())
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await worker.wait_state(WorkerState.READY)
        assert worker.worker.lifecycle.max_perf == 42.0
        assert bench_funcs.calls == [f"http://127.0.0.1:{port}"]
    finally:
        await runner.cleanup()


async def test_benchmark_result_is_cached_per_model(
    make_worker: MakeWorker, backend: tuple[ScriptedBackend, str]
) -> None:
    _, backend_url = backend
    bench_funcs.calls.clear()
    env = {
        "BACKEND_URL": backend_url,
        "UNSECURED": "true",
        "BENCHMARK": "tests.support.bench_funcs:counting",
        "MODEL_NAME": "a",
    }
    first = await make_worker(**env)
    second = await make_worker(**env)
    assert bench_funcs.calls == [backend_url]  # the second start used the cache
    assert second.worker.lifecycle.max_perf == first.worker.lifecycle.max_perf == 42.0
    await make_worker(**{**env, "MODEL_NAME": "b"})
    assert len(bench_funcs.calls) == 2  # another model measures again


async def test_benchmark_with_a_bad_result_marks_errored(
    make_worker: MakeWorker, backend: tuple[ScriptedBackend, str]
) -> None:
    _, backend_url = backend
    worker = await make_worker(
        wait_ready=False,
        BACKEND_URL=backend_url,
        UNSECURED="true",
        BENCHMARK="tests.support.bench_funcs:zero",
    )
    await worker.wait_state(WorkerState.ERRORED)
    assert "expected workload/s > 0" in worker.worker.lifecycle.error_msg


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("tests.support.no_such_module:f", "cannot import"),
        ("tests.support.bench_funcs:not_async", "not an async function"),
        ("tests.support.bench_funcs:missing", "not an async function"),
    ],
)
async def test_bad_benchmark_spec_stops_start_up(
    make_worker: MakeWorker, backend: tuple[ScriptedBackend, str], spec: str, fragment: str
) -> None:
    _, backend_url = backend
    with pytest.raises(ConfigError, match=f"^BENCHMARK: .*{fragment}"):
        await make_worker(BACKEND_URL=backend_url, UNSECURED="true", BENCHMARK=spec)


def append(path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text)


async def test_model_log_loaded_error_and_rotation(
    make_worker: MakeWorker, backend: tuple[ScriptedBackend, str], tmp_path: Path
) -> None:
    _, backend_url = backend
    log = tmp_path / "model.log"
    await asyncio.to_thread(append, log, "starting\ndownloading 10%\n")
    worker = await make_worker(
        wait_ready=False,
        BACKEND_URL=backend_url,
        UNSECURED="true",
        VESPID_MAX_PERF="10",
        MODEL_LOG=str(log),
        VESPID_LOG_LOADED="server has started",
        VESPID_LOG_ERROR="corrupted model file",
        VESPID_LOG_INFO="downloading",
    )
    await asyncio.sleep(0.3)
    assert worker.worker.lifecycle.state is WorkerState.LOADING
    await asyncio.to_thread(append, log, "Exception: corrupted model file\n")
    await worker.wait_state(WorkerState.ERRORED)
    assert "corrupted model file" in worker.worker.lifecycle.error_msg
    # The log is rotated; the new file says the (restarted) server is up.
    await asyncio.to_thread(os.rename, log, tmp_path / "model.log.1")
    await asyncio.to_thread(append, log, "server has started on :5001\n")
    await worker.wait_state(WorkerState.READY)


async def test_errored_when_backend_never_comes_up_is_not_forever(
    make_worker: MakeWorker,
) -> None:
    """A worker whose backend is down stays loading (not errored for good) and reports so."""
    stand_in = ScriptedBackend(healthy=False)
    async with start_app(stand_in.app()) as backend_url:
        worker = await make_worker(
            wait_ready=False,
            BACKEND_URL=backend_url,
            UNSECURED="true",
            HEALTHCHECK_ENDPOINT="/health",
            VESPID_MAX_PERF="10",
        )
        await asyncio.sleep(0.2)
        assert worker.worker.lifecycle.state is WorkerState.LOADING
        stand_in.healthy = True
        await worker.wait_state(WorkerState.READY)
