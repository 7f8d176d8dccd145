"""An UNSECURED worker lets auth_data leave out the fields it does not need; a secured
worker still needs every one."""

from __future__ import annotations

import json

import aiohttp
import pytest

from tests.support.servers import ScriptedBackend
from tests.worker.conftest import MakeWorker, RunningWorker, envelope
from vespid.protocol.wire import AUTH_HEADER, parse_unsecured_auth_data


@pytest.fixture
async def unsecured(make_worker: MakeWorker, backend: tuple[ScriptedBackend, str]) -> RunningWorker:
    _, backend_url = backend
    return await make_worker(BACKEND_URL=backend_url, UNSECURED="true", VESPID_MAX_PERF="10")


async def test_empty_auth_data_is_served_on_every_route(
    unsecured: RunningWorker, http: aiohttp.ClientSession
) -> None:
    async with http.post(unsecured.url + "/echo", json=envelope({}, {"n": 1})) as resp:
        assert resp.status == 200  # the lean front's POST
        assert json.loads((await resp.json())["body"]) == {"n": 1}
    async with http.get(unsecured.url + "/echo", headers={AUTH_HEADER: "{}"}) as resp:
        assert resp.status == 200  # aiohttp's route, auth_data in the header
    async with http.post(
        unsecured.url + "/session/create", json=envelope({}, {"lifetime": 60})
    ) as resp:
        assert resp.status == 201
        session_id = (await resp.json())["session_id"]
    ref = {"session_id": session_id, "session_auth": {}}
    async with http.post(unsecured.url + "/session/get", json=ref) as resp:
        assert resp.status == 200  # session_auth is the auth_data as it was sent
        assert (await resp.json())["auth_data"] == {}


async def test_a_field_given_must_still_have_its_type(
    unsecured: RunningWorker, http: aiohttp.ClientSession
) -> None:
    async with http.post(unsecured.url + "/echo", json=envelope({"cost": "lots"}, {})) as resp:
        assert resp.status == 422
        assert (await resp.json())["fields"] == {
            "auth_data.cost": "expected a number (or a string holding one)"
        }
    async with http.post(unsecured.url + "/echo", json={"auth_data": [], "payload": {}}) as resp:
        assert resp.status == 422


async def test_cost_given_counts_and_defaults_fill_the_rest() -> None:
    auth = parse_unsecured_auth_data({"cost": 5, "extra": True})
    assert (auth.cost, auth.endpoint, auth.reqnum, auth.request_idx) == (5.0, "", 0, 0)
    assert (auth.signature, auth.url) == ("", "")
    assert auth.raw == {"cost": 5, "extra": True}


async def test_secured_worker_still_needs_every_field(
    make_signed_worker: MakeWorker, http: aiohttp.ClientSession
) -> None:
    worker = await make_signed_worker()
    async with http.post(worker.url + "/echo", json=envelope({}, {})) as resp:
        assert resp.status == 422
        fields = (await resp.json())["fields"]
    assert fields == {
        f"auth_data.{name}": "missing"
        for name in ("cost", "endpoint", "reqnum", "request_idx", "signature", "url")
    }
