"""Routes to workers the control plane started carry an HMAC tag under that worker's own
key (or an RSA signature with ``request_signing=rsa``); the real worker checks either."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.control.conftest import MakeControl, admin
from tests.control.test_scaling_e2e import llama_endpoint
from tests.support.waiting import wait_until
from vespid.control.policy import WorkerPhase


@pytest.mark.parametrize("signing", ["hmac", "rsa"])
async def test_routed_requests_are_checked_by_the_worker(
    make_control: MakeControl, http: aiohttp.ClientSession, tiny_model: Path, signing: str
) -> None:
    control = await make_control(request_signing=signing)
    spec = llama_endpoint(tiny_model, min_load=1, max_workers=1)
    _, ep = await admin(http, control, "POST", "/api/v0/endpoints", spec)

    def ready() -> bool:
        return any(w.phase is WorkerPhase.READY for w in control.fleet.workers.values())

    await wait_until(ready, timeout_s=60)

    async def route() -> dict[str, Any]:
        body = {"endpoint": "llm", "api_key": ep["api_key"], "cost": 1, "request_idx": 0}
        async with http.post(control.url + "/route/", json=body) as resp:
            assert resp.status == 200, await resp.text()
            answer: dict[str, Any] = await resp.json()
        assert "url" in answer, answer
        return answer

    async def call(auth: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        payload = {"prompt": "hi", "max_tokens": 1}
        async with http.post(
            auth["url"] + "/v1/completions", json={"auth_data": auth, "payload": payload}
        ) as resp:
            return resp.status, await resp.json()

    auth = await route()
    assert auth.get("alg") == ("HS256" if signing == "hmac" else None)
    assert len(auth["signature"]) == (44 if signing == "hmac" else 344)  # 32 vs 256 bytes
    status, _ = await call(auth)
    assert status == 200
    status, body = await call(auth)  # the same route again is a replay
    assert (status, body["code"]) == (401, "bad_signature")
    assert "replay" in body["error"]

    forged = await route()
    forged["cost"] = "0"  # a cheaper request than the router priced
    status, body = await call(forged)
    assert (status, body["code"]) == (401, "bad_signature")
    assert "does not match" in body["error"]
