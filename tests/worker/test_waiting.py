"""A worker waiting for its backend says what it waits for: in the log, at a calm
interval, and in the 503 a request gets meanwhile."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiohttp
import pytest

from tests.support.servers import ScriptedBackend, start_app
from tests.worker.conftest import MakeWorker, envelope
from vespid.servers.process import free_port
from vespid.worker import lifecycle

AUTH = {"cost": 1, "endpoint": "e", "reqnum": 1, "request_idx": 1, "signature": "", "url": ""}


@pytest.fixture(autouse=True)
def quick_narration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lifecycle, "WAIT_LOG_FIRST_S", 0.05)
    monkeypatch.setattr(lifecycle, "WAIT_LOG_EVERY_S", 0.1)


async def wait_lines(caplog: pytest.LogCaptureFixture, fragment: str, count: int) -> list[str]:
    """The first ``count`` "still" lines with ``fragment``, once they are logged."""
    async with asyncio.timeout(10):
        while True:
            lines = [
                r.getMessage()
                for r in caplog.records
                if r.name == "vespid.worker" and "worker still" in r.getMessage()
            ]
            if len([line for line in lines if fragment in line]) >= count:
                return lines
            await asyncio.sleep(0.02)


async def test_refused_connection_is_named_in_the_log_and_the_503(
    make_worker: MakeWorker, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vespid.worker")
    backend_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    worker = await make_worker(
        wait_ready=False, BACKEND_URL=backend_url, UNSECURED="true", VESPID_READY_WAIT_S="0.1"
    )
    lines = await wait_lines(caplog, "connection refused", 2)
    assert lines[0].startswith(f"worker still loading: waiting for {backend_url}/: ")
    assert lines[0].endswith(" s so far)")
    async with http.post(worker.url + "/echo", json=envelope(AUTH, {})) as resp:
        assert resp.status == 503
        body = await resp.json()
    assert body["state"] == "loading"
    assert f"waiting for {backend_url}/: connection refused (" in body["error"]


async def test_last_status_seen_is_named(
    make_worker: MakeWorker, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vespid.worker")
    stand_in = ScriptedBackend(healthy=False)
    async with start_app(stand_in.app()) as backend_url:
        worker = await make_worker(
            wait_ready=False,
            BACKEND_URL=backend_url,
            UNSECURED="true",
            HEALTHCHECK_ENDPOINT="/health",
            VESPID_READY_WAIT_S="0.1",
            VESPID_MAX_PERF="10",
        )
        await wait_lines(caplog, f"{backend_url}/health answered 503", 1)
        async with http.post(worker.url + "/echo", json=envelope(AUTH, {})) as resp:
            assert resp.status == 503
            assert f"{backend_url}/health answered 503" in (await resp.json())["error"]


async def test_model_log_wait_is_named(
    make_worker: MakeWorker,
    backend: tuple[ScriptedBackend, str],
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.INFO, logger="vespid.worker")
    await make_worker(
        wait_ready=False,
        BACKEND_URL=backend[1],
        UNSECURED="true",
        VESPID_MAX_PERF="10",
        MODEL_LOG=f"{tmp_path}/model.log",
        VESPID_LOG_LOADED="server has started",
    )
    await wait_lines(caplog, "model.log to say 'server has started'", 1)
