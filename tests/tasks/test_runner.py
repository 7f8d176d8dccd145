"""The runner without HTTP: the pool's hand-overs, stopping stubborn programs, shutdown."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import yaml

from tests.support.waiting import wait_until
from tests.tasks.conftest import program
from tests.tasks.test_tasks_http import gone
from vespid.tasks.metrics import TaskMetrics
from vespid.tasks.pool import GpuPool
from vespid.tasks.presets import parse_presets
from vespid.tasks.process import detect_docker, detect_gpus
from vespid.tasks.runner import RunningTask, TaskRunner


async def make_runner(models: dict[str, dict[str, Any]], **kwargs: Any) -> TaskRunner:
    text = yaml.safe_dump({"models": {k: {"inference": v} for k, v in models.items()}})
    options: dict[str, Any] = {
        "gpus": ["0"],
        "queue_size": 4,
        "max_wait_s": 10.0,
        "timeout_s": 30.0,
        "docker_cli": "",
        "environ": os.environ,
        **kwargs,
    }
    presets = await asyncio.to_thread(parse_presets, text, Path(__file__))
    return TaskRunner(presets, **options)


async def test_a_slot_handed_to_a_waiter_that_gives_up_goes_back() -> None:
    pool = GpuPool(
        ["0"],
        queue_size=2,
        max_wait_s=10,
        on_park=lambda p: None,
        on_take=lambda p: None,
        metrics=TaskMetrics(),
    )
    lease = await pool.acquire("m")
    waiter = asyncio.create_task(pool.acquire("m"))
    await asyncio.sleep(0)  # it joins the queue
    assert pool.queued == 1
    pool.release(lease.device)  # handed to the waiter...
    waiter.cancel()  # ...which is cancelled before it runs again
    await asyncio.gather(waiter, return_exceptions=True)
    assert (pool.free, pool.queued) == (["0"], 0)


async def test_a_program_that_ignores_sigterm_is_killed() -> None:
    runner = await make_runner(
        {"stubborn": {"command": program("hold", "--ignore-term"), "timeout_s": 0.2}},
        stop_grace_s=0.2,
    )
    await runner.start()
    try:
        async with runner.task("stubborn", {}) as task:
            first = await task.next_event()
            finish = await task.next_event()
        assert first is not None
        assert finish is not None
        assert finish.data["reason"] == "timeout"
        assert gone(first.data["pid"])
        assert runner.pool.free == ["0"]
    finally:
        await runner.close()


async def test_close_stops_running_and_idle_programs() -> None:
    runner = await make_runner(
        {
            "hold": {"command": program("hold")},
            "chat": {"command": program("session"), "session": True},
        },
        gpus=["0", "1"],
    )
    await runner.start()
    async with runner.task("chat", {"prompt": "x"}) as chat:
        while await chat.next_event() is not None:
            pass
    assert len(runner.pool.idle) == 1
    (idle,) = runner.pool.idle
    running = runner.task("hold", {})
    events: list[dict[str, Any]] = []

    async def consume(task: RunningTask) -> None:
        async with task:
            while (event := await task.next_event()) is not None:
                events.append(event.data)

    consumer = asyncio.create_task(consume(running))
    await wait_until(lambda: bool(events))  # the hold program has reported
    await runner.close()
    await consumer
    assert events[-1]["message"] == "the task was killed by SIGTERM before its finish event"
    assert gone(events[0]["pid"])
    assert gone(idle.pid)
    assert sorted(runner.pool.free, key=str) == ["0", "1"]


async def test_gpus_are_what_nvidia_smi_lists_and_none_without_it(tmp_path: Path) -> None:
    fake = tmp_path / "nvidia-smi"
    await asyncio.to_thread(fake.write_text, "#!/bin/sh\nprintf '0\\n1\\n'\n")
    await asyncio.to_thread(fake.chmod, 0o755)
    assert await detect_gpus(str(fake)) == ["0", "1"]
    assert await detect_gpus(str(tmp_path / "missing")) == []


async def test_docker_without_an_engine_says_why(tmp_path: Path) -> None:
    fake = tmp_path / "docker"
    script = "#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n"
    await asyncio.to_thread(fake.write_text, script)
    await asyncio.to_thread(fake.chmod, 0o755)
    assert await detect_docker(str(fake)) == (False, "Cannot connect to the Docker daemon")
