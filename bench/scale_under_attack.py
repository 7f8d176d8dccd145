"""The time a healthy endpoint takes to scale from zero while another tenant attacks.

    python bench/scale_under_attack.py              # 3 runs quiet, 3 runs attacked
    python bench/scale_under_attack.py --runs 5 --json out.json

A control plane in this process (local provider, null workers). Each run creates a fresh
endpoint at zero workers and times one client's /route/ call (re-asked while queued, as a
client polls) from its first ask to the answer naming a ready worker. Quiet runs measure
that alone; attacked runs measure it while, on other connections, an attacker keeps
sending what issue 12 found: /route/ calls on its own endpoint with ``cost: 1e308`` (and
inf, NaN, negative), and worker reports that forge another worker's id, or carry
``max_perf: "inf"``, ``cur_load: -1e12`` and wrong types. The attacker's answers are
counted by status; any 5xx is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vespid.control.app import ControlPlane  # noqa: E402
from vespid.control.serve import running_control  # noqa: E402
from vespid.control.settings import ControlSettings  # noqa: E402

NULL = {"scaling": {"max_workers": 1, "target_util": 1.0, "max_queue_time": 0},
        "template": {"env": {"VESPID_LOG_LEVEL": "warning"}, "ready_timeout": 60}}  # fmt: skip
ATTACK_ROUTES = [b"1e308", b"1.7e308", b"NaN", b"Infinity", b"-1", b'"1e308"']


async def admin(http: aiohttp.ClientSession, control: ControlPlane, body: Any) -> Any:
    headers = {"Authorization": f"Bearer {control.admin_key}"}
    async with http.post(control.url + "/api/v0/endpoints", json=body, headers=headers) as r:
        assert r.status == 201, await r.text()
        return await r.json()


async def scale_from_zero(http: aiohttp.ClientSession, control: ControlPlane, name: str) -> float:
    key = (await admin(http, control, {"name": name, **NULL}))["api_key"]
    body: dict[str, Any] = {"endpoint": name, "api_key": key, "cost": 1}
    began = time.monotonic()
    async with asyncio.timeout(120):
        while True:
            async with http.post(control.url + "/route/", json=body) as resp:
                answer = await resp.json()
            if "url" in answer:
                return time.monotonic() - began
            body["request_idx"] = answer["request_idx"]


async def attack(control: ControlPlane, key: str, statuses: Counter[int]) -> None:
    """Forever (until cancelled): absurd costs and forged or poisoned reports."""
    async with aiohttp.ClientSession() as http:
        i = 0
        while True:
            i += 1
            cost = ATTACK_ROUTES[i % len(ATTACK_ROUTES)]
            raw = b'{"endpoint": "attacker", "api_key": "%s", "cost": %s}' % (key.encode(), cost)
            async with http.post(control.url + "/route/", data=raw) as resp:
                statuses[resp.status] += 1
            victim = next(iter(control.fleet.workers), 1)
            for report in (
                {"id": victim, "mtoken": control.keys.worker_token(victim + 1000),
                 "error_msg": "stop", "cur_load": -1e12},
                {"id": victim, "mtoken": control.keys.worker_token(victim), "max_perf": "inf"},
                {"id": victim, "mtoken": control.keys.worker_token(victim), "cur_load": []},
            ):  # fmt: skip
                async with http.post(control.url + "/worker_status/", json=report) as resp:
                    statuses[resp.status] += 1


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as state:
        settings = ControlSettings(port=0, state_dir=Path(state), scale_interval_s=0.5,
                                   log_level="error", stop_workers_on_exit=True)  # fmt: skip
        async with running_control(settings, os.environ) as control, \
                aiohttp.ClientSession() as http:  # fmt: skip
            quiet = [await scale_from_zero(http, control, f"quiet{i}") for i in range(args.runs)]
            key = (await admin(http, control, {"name": "attacker", **NULL}))["api_key"]
            statuses: Counter[int] = Counter()
            attackers = [asyncio.create_task(attack(control, key, statuses)) for _ in range(4)]
            try:
                attacked = [await scale_from_zero(http, control, f"victim{i}")
                            for i in range(args.runs)]  # fmt: skip
            finally:
                for task in attackers:
                    task.cancel()
                await asyncio.gather(*attackers, return_exceptions=True)
    return {
        "quiet_s": [round(t, 3) for t in quiet],
        "attacked_s": [round(t, 3) for t in attacked],
        "quiet_median_s": round(statistics.median(quiet), 3),
        "attacked_median_s": round(statistics.median(attacked), 3),
        "attacker_answers": dict(sorted(statuses.items())),
        "attacker_5xx": sum(n for s, n in statuses.items() if s >= 500),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    result = asyncio.run(main(parser.parse_args()))
    print(json.dumps(result, indent=2))
    if parser.parse_args().json:
        parser.parse_args().json.write_text(json.dumps(result, indent=2))
