"""Tasks through a real worker (``VESPID_TASKS``): real programs, real SSE, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
from typing import Any

import aiohttp
import pytest
from aiohttp_sse_client2 import client as sse_client

from tests.support.servers import Autoscaler
from tests.support.waiting import wait_until
from tests.tasks.conftest import Event, MakeTaskWorker, TaskWorker, program, unsigned
from tests.worker.conftest import envelope

_reqnum = itertools.count(1000)


def gone(pid: int) -> bool:
    """True once no process has this pid (the runner reaps what it stops)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def holding(event: Event) -> tuple[int, str]:
    """The pid and GPU_DEVICE that tests/tasks/programs/hold.py reported."""
    data = event.json
    assert (event.type, data["status"]) == ("worker", "holding")
    return data["pid"], data["env"]["GPU_DEVICE"]


class HeldTask:
    """A hold.py task streaming in the background; ``first`` is its report."""

    def __init__(self, worker: TaskWorker, model: str = "hold", **payload: Any) -> None:
        self.worker = worker
        self.first: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self.done = asyncio.create_task(self._run(model, payload))

    async def _run(self, model: str, payload: dict[str, Any]) -> list[Event]:
        found: list[Event] = []
        async with sse_client.EventSource(
            f"{self.worker.url}/tasks/{model}",
            session=self.worker.http,
            option={"method": "POST"},
            json=envelope(unsigned(cost=0.01), payload),
        ) as source:
            async for message in source:
                found.append(Event(message.type, message.data))
                if len(found) == 1:
                    self.first.set_result(found[0])
                if message.type == "finish":
                    break
        return found

    async def report(self) -> tuple[int, str]:
        return holding(await asyncio.wait_for(asyncio.shield(self.first), 10))


async def test_loading_worker_events_arrive_in_order_as_sse(task_worker: MakeTaskWorker) -> None:
    worker = await task_worker(
        {
            "test-loading": {
                "command": program("loading-worker/worker.py"),
                "env_vars": {"LOAD_STEPS": 2, "STEP_SECONDS": 0},
            }
        },
        VESPID_GPUS="0,1",
    )
    events = await worker.events("test-loading", {"prompt": "ignored"})
    assert [e.type for e in events] == [
        "connection",
        *["worker"] * 4,
        "text",
        *["worker"] * 2,
        "finish",
    ]
    assert [e.json["status"] for e in events if e.type == "worker"] == [
        "initializing",
        "loading",
        "loading",
        "ready",
        "cleaning_up",
        "cleaning_up",
    ]
    assert all(e.json["event"] == e.type for e in events)
    # data: is the line exactly as the program printed it (json.dumps spacing included).
    assert events[0].data == '{"event": "connection", "status": "connected"}'
    assert events[1].json["message"] == "Starting up on GPU 0"
    assert [e.json.get("progress") for e in events[2:4]] == [50, 100]
    assert events[5].json["content"] == "Model test-loading loaded on GPU 0 and ready."
    assert events[-1].json == {"event": "finish", "status": "completed"}
    await wait_until(lambda: len(worker.runner.pool.free) == 2)


async def test_signed_request_runs_and_forged_one_is_refused(
    task_worker: MakeTaskWorker, autoscaler: tuple[Autoscaler, str]
) -> None:
    scaler, scaler_url = autoscaler
    worker = await task_worker(
        {"text": {"command": program("text-worker/worker.py"), "env_vars": {"WORD_SECONDS": 0}}},
        UNSECURED="false",
        REPORT_ADDR=scaler_url,
    )

    def signed() -> dict[str, Any]:
        n = next(_reqnum)
        return scaler.signer.auth_data(
            url=worker.url, cost=1, endpoint="tasks", reqnum=n, request_idx=n
        )

    events = await worker.events("text", {"prompt": "hi"}, auth=signed())
    assert [e.type for e in events][-5:] == ["text_delta"] * 3 + ["text", "finish"]
    forged = {**signed(), "cost": 0.001}
    status, body = await worker.post("text", {"prompt": "hi"}, auth=forged)
    assert (status, body["code"]) == (401, "bad_signature")


async def test_no_stream_returns_every_event_and_the_result_as_json(
    task_worker: MakeTaskWorker, http: aiohttp.ClientSession
) -> None:
    worker = await task_worker(
        {"text": {"command": program("text-worker/worker.py"), "env_vars": {"WORD_SECONDS": 0}}}
    )
    status, body = await worker.post("text", {"prompt": "hello there", "stream": False})
    assert status == 200
    assert body["status"] == "completed"
    assert body["text"] == "You said: hello there"
    assert body["model"] == "text"
    assert body["finish"] == {"event": "finish", "status": "completed"}
    assert [e["event"] for e in body["events"]] == [
        "connection",
        "worker",
        "worker",
        *["text_delta"] * 4,
        "text",
        "finish",
    ]
    assert "".join(e["delta"] for e in body["events"] if e["event"] == "text_delta") == (
        "You said: hello there"
    )
    # The task server's own metrics, through the worker.
    auth = '{"cost": 0, "endpoint": "m", "reqnum": 1, "request_idx": 1, "signature": "", "url": ""}'
    async with http.get(worker.url + "/metrics/backend", headers={"X-Vespid-Auth": auth}) as r:
        text = await r.text()
    assert 'vespid_tasks_total{model="text",reason="",status="completed"} 1.0' in text


async def test_refusals_are_json_with_a_status(task_worker: MakeTaskWorker) -> None:
    worker = await task_worker({"text": {"command": program("text-worker/worker.py")}})
    status, body = await worker.post("nope", {"prompt": "x"})
    assert (status, body["code"]) == (404, "not_found")
    assert "known: text" in body["error"]
    status, body = await worker.post("text", {"prompt": "x", "stream": "yes"})
    assert (status, body["code"]) == (422, "invalid_request")
    async with worker.http.post(
        f"{worker.url}/tasks/text", json=envelope(unsigned(), ["not", "an", "object"])
    ) as resp:
        assert (resp.status, (await resp.json())["code"]) == (422, "invalid_request")
    status, body = await worker.post("text", {"prompt": "x", "metadata": "who"})
    assert (status, body["fields"]) == (422, {"metadata": "not an object"})


async def test_crash_ends_with_failed_finish_and_exit_code(
    task_worker: MakeTaskWorker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vespid.task")
    worker = await task_worker({"crash": {"command": program("crash")}})
    events = await worker.events("crash", {})
    assert [e.type for e in events] == ["connection", "finish"]
    assert events[-1].json == {
        "event": "finish",
        "status": "failed",
        "reason": "exited",
        "message": "the task exited with code 3 before its finish event",
        "exit_code": 3,
    }
    # stderr went to the log, and only there.
    assert any("out of GPU memory" in r.getMessage() for r in caplog.records)
    assert not any("GPU memory" in e.data for e in events)
    await wait_until(lambda: worker.runner.pool.free == ["0"])


async def test_garbage_lines_become_log_events_and_the_task_goes_on(
    task_worker: MakeTaskWorker,
) -> None:
    worker = await task_worker({"garbage": {"command": program("garbage")}})
    events = await worker.events("garbage", {})
    assert [e.type for e in events] == [
        "connection",
        *["log"] * 6,
        "gpu_stats",
        "text",
        "log",
        "text",
        "finish",
    ]
    logs = [e.json for e in events if e.type == "log"]
    assert {log["level"] for log in logs} == {"error"}
    assert logs[0]["line"] == "Loading checkpoint shards: 100%"
    assert "not valid JSON" in logs[0]["message"]
    assert "'delta' must be a string" in logs[3]["message"]
    assert events[7].json == {"event": "gpu_stats", "util": 0.97}  # unknown type: untouched
    assert events[8].json["content"] == "carriage"
    assert events[-1].json["status"] == "completed"


async def test_a_hang_is_killed_at_the_timeout(task_worker: MakeTaskWorker) -> None:
    worker = await task_worker({"hold": {"command": program("hold"), "timeout_s": 0.5}})
    events = await worker.events("hold", {})
    pid, _ = holding(events[0])
    assert events[1].json == {
        "event": "finish",
        "status": "failed",
        "reason": "timeout",
        "message": "no finish within 0.5 s; the task was killed",
    }
    assert gone(pid)
    await wait_until(lambda: worker.runner.pool.free == ["0"])


async def test_client_that_goes_away_kills_the_task_and_frees_its_gpu(
    task_worker: MakeTaskWorker,
) -> None:
    worker = await task_worker({"hold": {"command": program("hold")}}, VESPID_GPUS="3")
    async with aiohttp.ClientSession() as doomed:
        held = HeldTask(TaskWorker(worker.running, doomed))
        pid, gpu = await held.report()
        assert (gpu, worker.runner.pool.free) == ("3", [])
        held.done.cancel()
        with pytest.raises(asyncio.CancelledError):
            await held.done
    await wait_until(lambda: gone(pid) and worker.runner.pool.free == ["3"])
    metrics = worker.runner.metrics
    assert metrics.tasks.labels("hold", "cancelled", "")._value.get() == 1


async def test_two_gpus_run_two_tasks_a_third_waits_and_a_fourth_is_refused(
    task_worker: MakeTaskWorker,
) -> None:
    worker = await task_worker(
        {"hold": {"command": program("hold")}},
        VESPID_GPUS="0,1",
        VESPID_TASK_QUEUE_SIZE="1",
        MAX_WAIT_TIME="30",
    )
    first, second = HeldTask(worker), HeldTask(worker)
    (pid_a, gpu_a), (pid_b, gpu_b) = await first.report(), await second.report()
    assert {gpu_a, gpu_b} == {"0", "1"}
    third = HeldTask(worker)
    await wait_until(lambda: worker.runner.pool.queued == 1)
    status, body = await worker.post("hold", {})
    assert (status, body["code"], body["queue_size"]) == (429, "overloaded", 1)
    assert "task queue is full" in body["error"]
    assert not third.first.done()
    os.kill(pid_a, signal.SIGUSR1)  # the first finishes; the third gets its GPU
    pid_c, gpu_c = await third.report()
    assert gpu_c == gpu_a
    os.kill(pid_b, signal.SIGUSR1)
    os.kill(pid_c, signal.SIGUSR1)
    for held in (first, second, third):
        events = await held.done
        assert events[-1].json == {"event": "finish", "status": "completed"}
    await wait_until(lambda: sorted(worker.runner.pool.free, key=str) == ["0", "1"])


async def test_a_task_waiting_past_max_wait_time_is_refused(task_worker: MakeTaskWorker) -> None:
    worker = await task_worker(
        {"hold": {"command": program("hold")}}, VESPID_TASK_QUEUE_SIZE="4", MAX_WAIT_TIME="0.3"
    )
    held = HeldTask(worker)
    pid, _ = await held.report()
    status, body = await worker.post("hold", {})  # cost 1 at 1 slot: the estimate lets it in
    assert (status, body["code"]) == (429, "overloaded")
    assert "no GPU came free within MAX_WAIT_TIME (0.3 s" in body["error"]
    assert worker.runner.pool.queued == 0
    os.kill(pid, signal.SIGUSR1)
    assert (await held.done)[-1].json["status"] == "completed"


async def test_session_program_takes_the_next_input_on_stdin(task_worker: MakeTaskWorker) -> None:
    worker = await task_worker(
        {"chat": {"command": program("session"), "session": True, "session_idle_s": 0.5}}
    )
    first = await worker.events("chat", {"prompt": "one"})
    assert [e.type for e in first] == ["connection", "text", "finish"]
    await wait_until(lambda: len(worker.runner.pool.idle) == 1)
    (idle,) = worker.runner.pool.idle
    second = await worker.events("chat", {"prompt": "two"})
    assert [e.type for e in second] == ["text", "finish"]  # no start-up: the same program
    assert first[1].json["content"] == f"one #1 from {idle.pid}"
    assert second[0].json["content"] == f"two #2 from {idle.pid}"
    # Idle past session_idle_s: stopped, and its GPU is free.
    await wait_until(lambda: worker.runner.pool.free == ["0"] and gone(idle.pid))


async def test_an_idle_session_gives_its_gpu_to_another_model(
    task_worker: MakeTaskWorker,
) -> None:
    worker = await task_worker(
        {
            "chat": {"command": program("session"), "session": True},
            "text": {"command": program("text-worker/worker.py"), "env_vars": {"WORD_SECONDS": 0}},
        }
    )
    await worker.events("chat", {"prompt": "one"})
    await wait_until(lambda: len(worker.runner.pool.idle) == 1)
    (idle,) = worker.runner.pool.idle
    events = await worker.events("text", {"prompt": "hi"})
    assert events[-1].json["status"] == "completed"
    assert gone(idle.pid)


async def test_environment_input_and_no_gpu_on_a_cpu_machine(
    task_worker: MakeTaskWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MASTER_TOKEN", "vespid's secret")
    worker = await task_worker(
        {
            "hold": {
                "command": program("hold"),
                "env_vars": {"FROM_PRESET": 7, "MODEL_NAME": "renamed"},
                "model_path": "weights",
            }
        },
        VESPID_GPUS="",
    )
    payload: dict[str, Any] = {"prompt": "hi", "metadata": {"user": "u1"}}
    held = HeldTask(worker, **payload)
    report = (await asyncio.wait_for(held.first, 10)).json
    assert report["input"] == {"prompt": "hi", "metadata": {"user": "u1"}}
    presets_dir = str(worker.runner.presets.models["hold"].directory)
    assert report["cwd"] == presets_dir
    env = report["env"]
    assert env.pop("TASK_ID")
    assert env == {
        "MODEL_NAME": "renamed",
        "MODEL_PATH": presets_dir + "/weights",
        "GPU_DEVICE": "",
        "CUDA_VISIBLE_DEVICES": None,
        "TASK_METADATA": '{"user":"u1"}',
        "FROM_PRESET": "7",
        "MASTER_TOKEN": None,
    }
    os.kill(report["pid"], signal.SIGUSR1)
    events = await held.done
    assert events[-2].json["content"] == "released on GPU "


async def test_docker_only_model_without_an_engine_is_refused(
    task_worker: MakeTaskWorker,
) -> None:
    worker = await task_worker(
        {"boxed": {"docker_image": "loading-worker:latest"}}, VESPID_DOCKER="/nonexistent/docker"
    )
    status, body = await worker.post("boxed", {})
    assert (status, body["code"], body["reason"]) == (503, "not_ready", "no_docker")
    assert "needs Docker" in body["error"]


async def test_with_an_engine_a_docker_image_runs_as_docker_run(
    task_worker: MakeTaskWorker, tmp_path: Any
) -> None:
    cli = tmp_path / "docker"
    script = f'#!/bin/sh\nexec {" ".join(program("fake_docker"))} "$@"\n'
    await asyncio.to_thread(cli.write_text, script)
    await asyncio.to_thread(cli.chmod, 0o755)
    worker = await task_worker(
        {
            "boxed": {
                "docker_image": "loading-worker:latest",
                "command": ["python", "/app/worker.py"],
                "env_vars": {"STEP_SECONDS": 0},
                "model_path": "/srv/models",
            }
        },
        VESPID_DOCKER=str(cli),
        VESPID_GPUS="1",
    )
    assert worker.runner.docker
    events = await worker.events("boxed", {})
    report = events[1].json
    task_id = report["env"]["TASK_ID"]
    assert report["argv"] == [
        "run", "--rm", "-i", "--init", "--name", f"vespid-boxed-{task_id}",
        "--gpus", "device=1", "-v", "/srv/models:/models:ro",
        "-e", "GPU_DEVICE", "-e", "MODEL_NAME", "-e", "MODEL_PATH", "-e", "STEP_SECONDS",
        "-e", "TASK_ID",
        "loading-worker:latest", "python", "/app/worker.py",
    ]  # fmt: skip
    assert report["env"] == {
        "GPU_DEVICE": "1",
        "MODEL_NAME": "boxed",
        "MODEL_PATH": "/models",
        "STEP_SECONDS": "0",
        "TASK_ID": task_id,
    }
