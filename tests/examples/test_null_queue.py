"""examples/null_queue end to end: control plane, null workers with consumers, Redis, client."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import aiohttp

from tests.control.conftest import MakeControl, admin
from tests.support.waiting import wait_until

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "null_queue"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"null_queue_{name}", EXAMPLE / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_one_worker_per_job_then_back_to_zero(
    make_control: MakeControl, http: aiohttp.ClientSession, redis_url: str
) -> None:
    control = await make_control()
    consumer = [sys.executable, str(EXAMPLE / "consumer.py"), "--redis", redis_url,
                "--worker-url", "http://127.0.0.1:{worker_port}",
                "--control-url", "http://127.0.0.1:{control_port}"]  # fmt: skip
    spec = {
        "name": "jobs",
        "scaling": {"min_load": 0, "target_util": 1.0, "max_queue_time": 0,
                    "target_queue_time": 0, "max_workers": 3, "inactivity_timeout": 2,
                    "scale_down_delay": 0.5, "reservoir_workers": 0},
        "template": {"env": {"BACKEND": "null", "VESPID_LOG_LEVEL": "warning"},
                     "model_command": consumer},
    }  # fmt: skip
    status, ep = await admin(http, control, "POST", "/api/v0/endpoints", spec)
    assert status == 201
    dispatcher = await asyncio.to_thread(load, "dispatcher")
    # Three jobs that each work for 2 s, dispatched at once: three sessions at once.
    jobs = [{"job_id": f"j{i}", "n": 10 * (i + 1), "seconds": 2.0} for i in range(3)]
    results = await dispatcher.dispatch(control.url, ep["api_key"], "jobs", redis_url, jobs)
    assert [r["sum_of_squares"] for r in results] == [385, 2870, 9455]
    starts = [e for e in control.scaling_log if e["action"] == "start"]
    assert len(starts) == 3  # 0 -> 1 -> 2 -> 3 workers, one per session

    def stopped() -> int:
        return sum(e["action"] == "stop" for e in control.scaling_log)

    await wait_until(lambda: stopped() == 3, timeout_s=60)  # released, idle, back to zero
    assert not control.fleet.workers
