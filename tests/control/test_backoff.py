"""A model that cannot load does not make the control plane start workers in a tight loop."""

from __future__ import annotations

import sys

import aiohttp

from tests.control.conftest import MakeControl, admin
from tests.support.waiting import wait_until


async def test_start_backoff_doubles_after_each_failed_worker(
    make_control: MakeControl, http: aiohttp.ClientSession
) -> None:
    control = await make_control()
    spec = {
        "name": "broken",
        # min_load keeps one worker wanted; the model server exits at once, every time.
        "scaling": {"min_load": 1, "max_workers": 1, "inactivity_timeout": 0},
        "template": {
            "model_command": [sys.executable, "-c", "raise SystemExit(3)"],
            "env": {"HEALTHCHECK_ENDPOINT": "/health", "VESPID_LOG_LEVEL": "warning"},
        },
    }
    assert (await admin(http, control, "POST", "/api/v0/endpoints", spec))[0] == 201

    def actions(kind: str) -> list[float]:
        return [e["time"] for e in control.scaling_log if e["action"] == kind]

    await wait_until(lambda: len(actions("start")) >= 3, timeout_s=45)
    starts, stops = actions("start"), actions("stop")
    # Without a backoff a replacement starts within a scaling interval (0.1 s here);
    # with it, 1 s after the first failure and 2 s after the second.
    assert starts[1] - stops[0] >= 0.9
    assert starts[2] - stops[1] >= 1.9
    assert control._failures["broken"] >= 2
