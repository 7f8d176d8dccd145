"""Finding 10: no process a task started outlives its task, however the task ends.

Each test runs ``tests/tasks/programs/spawner.py``, which starts a child that would sleep
for an hour, on a real worker (or the task server alone) on 127.0.0.1, ends the task
one way or another, and checks that the child no longer runs. Where the task's answer
ends only after its process group is gone, the check comes right after the answer,
with no waiting: the answer itself says the task is done.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from tests.support.waiting import wait_until
from tests.tasks import conftest as task_fixtures
from tests.tasks.conftest import MakeTaskWorker, TaskWorker, program, unsigned
from tests.worker.conftest import envelope
from vespid.tasks.presets import parse_presets
from vespid.tasks.runner import TaskRunner
from vespid.tasks.server import TaskServer

blockbuster = task_fixtures.blockbuster
no_leaked_tasks = task_fixtures.no_leaked_tasks
make_worker = task_fixtures.make_worker
http = task_fixtures.http
task_worker = task_fixtures.task_worker

GRACE = {"VESPID_TASK_STOP_GRACE_S": "0.3"}  # SIGTERM, then SIGKILL this much later


def _runs(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie (an orphan that PID 1 has not reaped) does not."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc here
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


async def runs(pid: int) -> bool:
    return await asyncio.to_thread(_runs, pid)


def spawner(*flags: str, **inference: Any) -> dict[str, dict[str, Any]]:
    return {"spawner": {"command": program("spawner", *flags), **inference}}


async def child_of(worker: TaskWorker, payload: dict[str, Any]) -> tuple[int, list[Any]]:
    """Run one streamed task and read its answer to the end; the child's pid and the events."""
    url = f"{worker.url}/tasks/spawner"
    async with worker.http.post(url, json=envelope(unsigned(), payload)) as resp:
        assert resp.status == 200
        body = await resp.read()  # the stream ends once the task is done
    events = [orjson.loads(line[6:]) for line in body.split(b"\n") if line.startswith(b"data: ")]
    assert events[0]["status"] == "spawned"
    return events[0]["child"], events


async def test_a_child_left_by_a_task_that_finished_is_ended_with_it(
    task_worker: MakeTaskWorker,
) -> None:
    worker = await task_worker(spawner("--finish", "--ignore-term"), **GRACE)
    child, events = await child_of(worker, {})
    assert events[-1] == {"event": "finish", "status": "completed"}
    assert not await runs(child)  # killed, after SIGTERM was ignored
    assert worker.runner.pool.free == ["0"]


@pytest.mark.parametrize(
    "flags",
    [
        pytest.param(("--ignore-term",), id="stdout-not-held"),
        # Before: the stream waited for the child to close stdout, until the task's timeout.
        pytest.param(("--ignore-term", "--keep-stdout"), id="stdout-held"),
    ],
)
async def test_a_child_of_a_task_that_died_is_ended(
    task_worker: MakeTaskWorker, flags: tuple[str, ...]
) -> None:
    worker = await task_worker(spawner(*flags, timeout_s=30), **GRACE)
    child, events = await child_of(worker, {})
    assert events[-1]["reason"] == "exited"
    assert events[-1]["exit_code"] == 4
    assert not await runs(child)


async def test_a_child_of_a_task_that_times_out_is_ended(task_worker: MakeTaskWorker) -> None:
    worker = await task_worker(spawner("--hang", "--keep-stdout", timeout_s=3), **GRACE)
    child, events = await child_of(worker, {})
    assert events[-1]["reason"] == "timeout"
    assert not await runs(child)


async def test_a_child_of_a_task_not_streamed_is_ended_before_the_answer(
    task_worker: MakeTaskWorker,
) -> None:
    worker = await task_worker(spawner("--finish"), **GRACE)
    status, body = await worker.post("spawner", {"stream": False})
    assert (status, body["status"]) == (200, "completed")
    assert not await runs(body["events"][0]["child"])


async def test_a_child_of_a_task_whose_client_went_away_is_ended(
    task_worker: MakeTaskWorker, http: aiohttp.ClientSession
) -> None:
    worker = await task_worker(spawner("--hang"), **GRACE)
    url = f"{worker.url}/tasks/spawner"
    async with http.post(url, json=envelope(unsigned(), {})) as resp:
        line = b""
        while not line.startswith(b"data: "):
            line = await resp.content.readline()
        child = orjson.loads(line[6:])["child"]
        assert await runs(child)
    # The connection is closed: the worker cancels its call, which ends the task.
    await wait_until(lambda: worker.runner.pool.free == ["0"])
    assert not await runs(child)


async def test_a_child_of_a_running_task_is_ended_at_shutdown(tmp_path: Path) -> None:
    text = yaml.safe_dump(
        {"models": {"spawner": {"inference": {"command": program("spawner", "--hang")}}}}
    )
    presets = await asyncio.to_thread(parse_presets, text, tmp_path / "presets.yaml")
    runner = TaskRunner(
        presets,
        gpus=["0"],
        queue_size=1,
        max_wait_s=5,
        timeout_s=60,
        docker_cli="",
        environ=os.environ,
        stop_grace_s=0.3,
    )
    server = TaskServer(runner)
    url = await server.start()
    async with aiohttp.ClientSession() as http, http.post(f"{url}/tasks/spawner", json={}) as resp:
        line = b""
        while not line.startswith(b"data: "):
            line = await resp.content.readline()
        child = orjson.loads(line[6:])["child"]
        await server.stop()
    assert not await runs(child)
