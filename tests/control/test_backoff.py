"""A model that cannot load does not make the control plane start workers in a tight loop.

The backoff's arithmetic (1 s, 2 s, 4 s ... up to 60 s; cleared by a worker that becomes
ready) is table-tested in test_policy.py; this is the one end-to-end check that the loop
carries it out, read through the status API as an operator would.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import aiohttp

from tests.control.conftest import MakeControl, admin


async def test_a_failing_template_backs_off_between_starts(
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

    async def scaling_log() -> list[dict[str, Any]]:
        async with http.get(control.url + "/api/v0/status") as resp:
            log: list[dict[str, Any]] = (await resp.json())["scaling_log"]
            return log

    log = await scaling_log()
    async with asyncio.timeout(30):  # the second start comes about 1 s after the first stop
        while sum(e["action"] == "start" for e in log) < 2:
            await asyncio.sleep(0.05)
            log = await scaling_log()
    starts = [e for e in log if e["action"] == "start"]
    stops = [e for e in log if e["action"] == "stop"]
    # Without a backoff a replacement starts within a scaling interval (0.1 s here);
    # with it, 1 s after the first failure, and the stop's reason says so.
    assert starts[1]["time"] - stops[0]["time"] >= 0.9
    assert "1 worker(s) in a row failed before ready (backoff)" in stops[0]["reason"]
