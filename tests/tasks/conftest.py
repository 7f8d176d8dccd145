"""Task fixtures: a real worker with ``VESPID_TASKS``, presets written per test, SSE reading."""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from aiohttp_sse_client2 import client as sse_client

from tests.worker import conftest as worker_fixtures
from tests.worker.conftest import MakeWorker, RunningWorker, envelope
from vespid.tasks.runner import TaskRunner

PROGRAMS = Path(__file__).parent / "programs"
EXAMPLES = Path(__file__).parents[2] / "examples" / "tasks"

# The worker tests' fixtures, shared: no blocking calls, no leaked tasks, a worker, a client.
blockbuster = worker_fixtures.blockbuster
no_leaked_tasks = worker_fixtures.no_leaked_tasks
make_worker = worker_fixtures.make_worker
autoscaler = worker_fixtures.autoscaler
http = worker_fixtures.http

_idx = itertools.count(1)


def program(name: str, *args: str) -> list[str]:
    """The command that runs a test program (or an example's worker.py) with this Python."""
    path = PROGRAMS / f"{name}.py" if "/" not in name else EXAMPLES / name
    return [sys.executable, str(path), *args]


def unsigned(cost: float = 1) -> dict[str, Any]:
    n = next(_idx)
    return {
        "cost": cost,
        "endpoint": "t",
        "reqnum": n,
        "request_idx": n,
        "signature": "",
        "url": "",
    }


@dataclass
class Event:
    """One SSE message as the client library parsed it."""

    type: str
    data: str

    @property
    def json(self) -> dict[str, Any]:
        value = orjson.loads(self.data)
        assert isinstance(value, dict)
        return value


@dataclass
class TaskWorker:
    running: RunningWorker
    http: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return self.running.url

    @property
    def runner(self) -> TaskRunner:
        tasks = self.running.served.tasks
        assert tasks is not None
        return tasks.runner

    async def events(
        self, model: str, payload: dict[str, Any], auth: dict[str, Any] | None = None
    ) -> list[Event]:
        """Every SSE message of one task, up to and including its finish."""
        found: list[Event] = []
        async with sse_client.EventSource(
            f"{self.url}/tasks/{model}",
            session=self.http,
            option={"method": "POST"},
            json=envelope(auth or unsigned(), payload),
        ) as source:
            async for message in source:
                found.append(Event(message.type, message.data))
                if message.type == "finish":
                    break  # the library would reconnect at the end of the stream
        return found

    async def post(
        self, model: str, payload: dict[str, Any], auth: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        async with self.http.post(
            f"{self.url}/tasks/{model}", json=envelope(auth or unsigned(), payload)
        ) as resp:
            return resp.status, await resp.json()


MakeTaskWorker = Callable[..., Awaitable[TaskWorker]]


@pytest.fixture
async def task_worker(
    make_worker: MakeWorker, http: aiohttp.ClientSession, tmp_path: Path
) -> MakeTaskWorker:
    """Factory: ``await task_worker({"model": {...inference...}}, VESPID_GPUS="0,1")``."""

    async def make(models: dict[str, dict[str, Any]], **env: str) -> TaskWorker:
        path = tmp_path / "model_presets.yaml"
        text = yaml.safe_dump({"models": {k: {"inference": v} for k, v in models.items()}})
        await asyncio.to_thread(path.write_text, text)
        settings = {"UNSECURED": "true", "VESPID_GPUS": "0", **env}
        running = await make_worker(VESPID_TASKS=str(path), **settings)
        return TaskWorker(running, http)

    return make
