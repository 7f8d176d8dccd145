"""The benchmark cache: keyed by what makes a figure valid (the benchmark, the model
named, the model the server reports, the server), said so in the log when used, and
skipped on request (VESPID_REBENCHMARK)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.support import bench_funcs
from tests.support.servers import start_app
from tests.worker.conftest import MakeWorker


class ModelServer:
    """A backend that reports its model the way one kind of server does."""

    def __init__(self, kind: str, model: str) -> None:
        self.kind = kind
        self.model = model

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/models", self._openai)
        app.router.add_get("/info", self._tgi)
        app.router.add_get("/api/tags", self._ollama)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    def _answer(self, kind: str, body: Any) -> web.Response:
        return web.json_response(body) if kind == self.kind else web.Response(status=404)

    async def _openai(self, request: web.Request) -> web.Response:
        return self._answer("openai", {"object": "list", "data": [{"id": self.model}]})

    async def _tgi(self, request: web.Request) -> web.Response:
        return self._answer("tgi", {"model_id": self.model, "version": "2.0"})

    async def _ollama(self, request: web.Request) -> web.Response:
        return self._answer("ollama", {"models": [{"name": self.model, "model": self.model}]})


@pytest.fixture(params=["openai", "tgi", "ollama"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[ModelServer, str]]:
    model_server = ModelServer(request.param, "model-a")
    async with start_app(model_server.app()) as url:
        yield model_server, url


async def counting_too(backend_url: str, session: aiohttp.ClientSession) -> float:
    """Another benchmark (loaded by BENCHMARK), counted with bench_funcs.counting's calls."""
    bench_funcs.calls.append(backend_url)
    return 21.0


def env(url: str, **more: str) -> dict[str, str]:
    return {
        "BACKEND_URL": url,
        "UNSECURED": "true",
        "BENCHMARK": "tests.support.bench_funcs:counting",
        **more,
    }


async def test_a_new_model_on_the_same_server_measures_again(
    make_worker: MakeWorker, server: tuple[ModelServer, str]
) -> None:
    model_server, url = server
    bench_funcs.calls.clear()
    await make_worker(**env(url))
    await make_worker(**env(url))
    assert len(bench_funcs.calls) == 1  # the same model: the cache
    model_server.model = "model-b"
    await make_worker(**env(url))
    assert len(bench_funcs.calls) == 2  # the server now reports another model
    model_server.model = "model-a"
    await make_worker(**env(url))
    assert len(bench_funcs.calls) == 2  # model-a's figure is still kept


async def test_another_benchmark_measures_again(
    make_worker: MakeWorker, server: tuple[ModelServer, str]
) -> None:
    _, url = server
    bench_funcs.calls.clear()
    await make_worker(**env(url))
    await make_worker(**env(url, BENCHMARK="tests.worker.test_benchmark_cache:counting_too"))
    assert len(bench_funcs.calls) == 2


async def test_cached_figure_is_logged_and_rebenchmark_measures_again(
    make_worker: MakeWorker, server: tuple[ModelServer, str], caplog: pytest.LogCaptureFixture
) -> None:
    _, url = server
    caplog.set_level(logging.INFO, logger="vespid.worker")
    bench_funcs.calls.clear()
    await make_worker(**env(url))
    await make_worker(**env(url))
    used = [r.getMessage() for r in caplog.records if "from cache" in r.getMessage()]
    assert len(used) == 1
    assert used[0].startswith("benchmark result from cache: 42.0 workload/s, measured ")
    assert f"for model model-a at {url} with tests.support.bench_funcs:counting" in used[0]
    assert "set VESPID_REBENCHMARK=true or pass --rebenchmark" in used[0]
    second = await make_worker(**env(url, VESPID_REBENCHMARK="true"))
    assert len(bench_funcs.calls) == 2
    assert second.worker.lifecycle.max_perf == 42.0
