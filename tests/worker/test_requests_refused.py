"""Bad input: every refusal is a JSON error that tells the caller what to fix."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import aiohttp
import pytest

from tests.support.servers import Autoscaler, ScriptedBackend
from tests.worker.conftest import MakeWorker, RunningWorker, envelope
from vespid.protocol.signing import Signer, generate_private_key

_idx = itertools.count(1000)


@pytest.fixture
async def secured(
    make_signed_worker: MakeWorker,
    autoscaler: tuple[Autoscaler, str],
) -> tuple[Autoscaler, RunningWorker]:
    scaler, _ = autoscaler
    worker = await make_signed_worker(
        VESPID_MAX_BODY_BYTES="4096",
    )
    return scaler, worker


def signed(scaler: Autoscaler, url: str, **over: Any) -> dict[str, Any]:
    return scaler.sign_for(url, 1, **over)


async def post(
    http: aiohttp.ClientSession, url: str, body: Any, *, raw: bytes | None = None
) -> tuple[int, dict[str, Any]]:
    data = raw if raw is not None else json.dumps(body).encode()
    async with http.post(url + "/echo", data=data) as resp:
        assert resp.content_type == "application/json"
        return resp.status, await resp.json()


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        pytest.param(b"{not json", "not valid JSON", id="invalid-json"),
        pytest.param(b"[1, 2]", "must be a JSON object", id="not-an-object"),
        pytest.param(b'{"payload": {}}', "auth_data", id="missing-auth-data"),
        pytest.param(b'{"auth_data": {}}', "payload", id="missing-payload"),
    ],
)
async def test_malformed_body_is_422(
    secured: tuple[Autoscaler, RunningWorker],
    http: aiohttp.ClientSession,
    raw: bytes,
    fragment: str,
) -> None:
    _, worker = secured
    status, body = await post(http, worker.url, None, raw=raw)
    assert status == 422
    assert fragment in body["error"]
    assert body["code"] == "invalid_request"


async def test_missing_and_wrong_typed_auth_fields_are_named(
    secured: tuple[Autoscaler, RunningWorker], http: aiohttp.ClientSession
) -> None:
    scaler, worker = secured
    auth = signed(scaler, worker.url)
    del auth["endpoint"]
    auth["reqnum"] = "seven"
    status, body = await post(http, worker.url, envelope(auth, {}))
    assert status == 422
    assert body["fields"] == {
        "auth_data.endpoint": "missing",
        "auth_data.reqnum": "expected an integer",
    }
    status, body = await post(
        http, worker.url, envelope(signed(scaler, worker.url), {}, session_id=5)
    )
    assert (status, body["fields"]) == (422, {"session_id": "expected a string"})


async def test_cost_must_be_a_number(
    secured: tuple[Autoscaler, RunningWorker], http: aiohttp.ClientSession
) -> None:
    scaler, worker = secured
    auth = signed(scaler, worker.url)
    auth["cost"] = "lots"
    status, body = await post(http, worker.url, envelope(auth, {}))
    assert status == 422
    assert "auth_data.cost" in body["fields"]


async def test_forged_signature_is_401(
    secured: tuple[Autoscaler, RunningWorker], http: aiohttp.ClientSession
) -> None:
    scaler, worker = secured
    other = Signer(generate_private_key())
    forged = other.auth_data(url=worker.url, cost=1, endpoint="e", reqnum=1, request_idx=1)
    status, body = await post(http, worker.url, envelope(forged, {}))
    assert (status, body["code"]) == (401, "bad_signature")
    tampered = signed(scaler, worker.url)
    tampered["cost"] = "0.001"  # cost is bound by the signature
    status, body = await post(http, worker.url, envelope(tampered, {}))
    assert status == 401
    assert "does not match" in body["error"]
    garbage = signed(scaler, worker.url)
    garbage["signature"] = "!!!"
    status, body = await post(http, worker.url, envelope(garbage, {}))
    assert (status, body["error"]) == (401, "auth_data.signature is not valid base64")


async def test_expired_signature_is_401(
    secured: tuple[Autoscaler, RunningWorker], http: aiohttp.ClientSession
) -> None:
    scaler, worker = secured
    n = next(_idx)
    old = scaler.signer.auth_data(
        url=worker.url, cost=1, endpoint="e", reqnum=n, request_idx=n, now=time.time() - 3600
    )
    status, body = await post(http, worker.url, envelope(old, {}))
    assert status == 401
    assert "expired" in body["error"]


async def test_replayed_signature_is_401(
    secured: tuple[Autoscaler, RunningWorker], http: aiohttp.ClientSession
) -> None:
    scaler, worker = secured
    auth = signed(scaler, worker.url)
    assert (await post(http, worker.url, envelope(auth, {"a": 1})))[0] == 200
    status, body = await post(http, worker.url, envelope(auth, {"a": 2}))
    assert status == 401
    assert "replay" in body["error"]


async def test_signature_for_another_worker_is_401(
    make_signed_worker: MakeWorker,
    autoscaler: tuple[Autoscaler, str],
    http: aiohttp.ClientSession,
) -> None:
    scaler, _ = autoscaler
    worker = await make_signed_worker(
        PUBLIC_IPADDR="127.0.0.1",
        VAST_TCP_PORT_0="40123",
    )
    mine = signed(scaler, "http://127.0.0.1:40123")
    assert (await post(http, worker.url, envelope(mine, {})))[0] == 200
    theirs = signed(scaler, "http://127.0.0.1:40124")
    status, body = await post(http, worker.url, envelope(theirs, {}))
    assert status == 401
    assert "not this worker's url" in body["error"]


def vast_current(scaler: Autoscaler, url: str) -> dict[str, Any]:
    message = json.dumps({"url": url}, indent=4, sort_keys=True).encode()
    n = next(_idx)
    return {
        "cost": "1",
        "endpoint": "e",
        "reqnum": n,
        "request_idx": n,
        "signature": scaler.signer.sign(message),
        "url": url,
    }


def vast_older(scaler: Autoscaler, url: str, reqnum: int) -> dict[str, Any]:
    auth: dict[str, Any] = {
        "cost": "1",
        "endpoint": "e",
        "reqnum": reqnum,
        "request_idx": reqnum,
        "url": url,
    }
    auth["signature"] = scaler.signer.sign(json.dumps(auth, indent=4).encode())
    return auth


async def test_vast_schemes_are_accepted_and_older_replays_refused(
    secured: tuple[Autoscaler, RunningWorker], http: aiohttp.ClientSession
) -> None:
    scaler, worker = secured
    current = vast_current(scaler, worker.url)
    for _ in range(2):  # the current Vast scheme binds only the url: repeats pass
        assert (await post(http, worker.url, envelope(current, {})))[0] == 200
    older = vast_older(scaler, worker.url, reqnum=500)
    assert (await post(http, worker.url, envelope(older, {})))[0] == 200
    status, body = await post(http, worker.url, envelope(older, {}))
    assert (status, "replay" in body["error"]) == (401, True)
    assert (await post(http, worker.url, envelope(vast_older(scaler, worker.url, 700), {})))[
        0
    ] == 200
    status, body = await post(http, worker.url, envelope(vast_older(scaler, worker.url, 550), {}))
    assert (status, "too old" in body["error"]) == (401, True)


async def test_vast_schemes_can_be_turned_off(
    make_signed_worker: MakeWorker,
    autoscaler: tuple[Autoscaler, str],
    http: aiohttp.ClientSession,
) -> None:
    scaler, _ = autoscaler
    worker = await make_signed_worker(
        VESPID_ACCEPT_VAST_SIGNATURES="false",
    )
    status, body = await post(http, worker.url, envelope(vast_current(scaler, worker.url), {}))
    assert status == 401
    assert "VESPID_ACCEPT_VAST_SIGNATURES" in body["error"]
    assert (await post(http, worker.url, envelope(signed(scaler, worker.url), {})))[0] == 200


async def test_body_over_the_limit_is_413(
    secured: tuple[Autoscaler, RunningWorker], http: aiohttp.ClientSession
) -> None:
    scaler, worker = secured
    big = envelope(signed(scaler, worker.url), {"prompt": "x" * 10_000})
    status, body = await post(http, worker.url, big)
    assert (status, body["code"], body["max_body_bytes"]) == (413, "body_too_large", 4096)
    # The connection and the worker are fine afterwards.
    assert (await post(http, worker.url, envelope(signed(scaler, worker.url), {})))[0] == 200


async def test_unsecured_worker_skips_signatures(
    make_worker: MakeWorker, backend: tuple[ScriptedBackend, str], http: aiohttp.ClientSession
) -> None:
    _, backend_url = backend
    worker = await make_worker(BACKEND_URL=backend_url, UNSECURED="true", VESPID_MAX_PERF="100")
    auth = {"cost": 1, "endpoint": "e", "reqnum": 1, "request_idx": 1, "signature": "", "url": ""}
    assert (await post(http, worker.url, envelope(auth, {})))[0] == 200
