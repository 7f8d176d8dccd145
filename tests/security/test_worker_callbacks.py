"""Session callbacks (``on_close_route``) cannot reach into the worker's network: with
the defaults only public addresses are called (a name is resolved and every address
checked, the connection goes to the checked address), redirects are never followed, a
worker never calls its own ports, and a null worker's ``/release`` ends only the session
it names."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.support.servers import Autoscaler, start_app
from tests.support.waiting import wait_until
from tests.worker.conftest import MakeWorker, RunningWorker, envelope
from vespid.worker.callbacks import not_public

INTERNAL = [
    "http://169.254.169.254/latest/meta-data/",
    "http://127.0.0.1:9/x",
    "http://127.1/x",
    "http://10.0.0.1/x",
    "http://192.168.1.1/x",
    "http://172.16.0.1/x",
    "http://100.100.100.200/x",
    "http://0.0.0.0:80/x",
    "http://[::1]:8080/x",
    "http://[::ffff:127.0.0.1]/x",
    "http://[::ffff:a9fe:a9fe]/x",
    "http://[64:ff9b::a9fe:a9fe]/x",
    "http://[fd00:ec2::254]/x",
    "http://[fe80::1]/x",
    "http://224.0.0.1/x",
]


@dataclass
class Receiver:
    """A callback receiver on 127.0.0.1; ``/hop`` redirects to ``redirect_to``."""

    received: list[tuple[str, Any]] = field(default_factory=list)
    redirect_to: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/closed", self._closed)
        app.router.add_post("/hop", self._hop)
        return app

    async def _closed(self, request: web.Request) -> web.Response:
        self.received.append((request.path, await request.json()))
        return web.json_response({"ok": True})

    async def _hop(self, request: web.Request) -> web.Response:
        self.received.append((request.path, await request.json()))
        raise web.HTTPTemporaryRedirect(self.redirect_to)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    r = Receiver()
    async with start_app(r.app()) as url:
        yield r, url


async def open_session(
    http: aiohttp.ClientSession, scaler: Autoscaler, worker: RunningWorker, route: Any
) -> tuple[int, dict[str, Any], dict[str, Any]]:
    auth = scaler.sign_for(worker.url)
    body = envelope(auth, {"lifetime": 60, "on_close_route": route})
    async with http.post(worker.url + "/session/create", json=body) as r:
        return r.status, await r.json(), auth


async def end_session(
    http: aiohttp.ClientSession, worker: RunningWorker, sid: str, auth: dict[str, Any]
) -> None:
    ref = {"session_id": sid, "session_auth": auth}
    async with http.post(worker.url + "/session/end", json=ref) as r:
        assert r.status == 200


def test_what_counts_as_not_public() -> None:
    import ipaddress

    for url in INTERNAL:
        host = url.split("//")[1].split("/")[0].rsplit(":", 1)[0] if "[" not in url else (
            url.split("[")[1].split("]")[0])  # fmt: skip
        if host == "127.1":
            continue
        assert not_public(ipaddress.ip_address(host)), url
    assert not not_public(ipaddress.ip_address("8.8.8.8"))
    assert not not_public(ipaddress.ip_address("2606:4700:4700::1111"))


@pytest.mark.parametrize("route", INTERNAL)
async def test_internal_addresses_are_refused_by_default(
    make_signed_worker: MakeWorker,
    autoscaler: tuple[Autoscaler, str],
    http: aiohttp.ClientSession,
    route: str,
) -> None:
    scaler, _ = autoscaler
    worker = await make_signed_worker(VESPID_ON_CLOSE_HOSTS="")
    status, body, _ = await open_session(http, scaler, worker, route)
    assert status == 422, body
    assert "on_close_route" in body["error"]
    assert "VESPID_ON_CLOSE_HOSTS" in body["error"] or "own port" in body["error"]
    assert not worker.worker.sessions.sessions


async def test_a_name_that_resolves_to_loopback_is_never_called(
    make_signed_worker: MakeWorker,
    autoscaler: tuple[Autoscaler, str],
    http: aiohttp.ClientSession,
    receiver: tuple[Receiver, str],
) -> None:
    scaler, _ = autoscaler
    rec, url = receiver
    worker = await make_signed_worker(VESPID_ON_CLOSE_HOSTS="")
    route = url.replace("127.0.0.1", "localhost") + "/closed"
    status, created, auth = await open_session(http, scaler, worker, route)
    assert status == 201  # a name is checked when it is resolved, at the call
    await end_session(http, worker, created["session_id"], auth)
    sessions = worker.worker.sessions
    await wait_until(lambda: sessions.callbacks_failed == 1)
    assert rec.received == []
    assert sessions.callbacks_delivered == 0


async def test_an_allowed_host_is_called_and_redirects_are_not_followed(
    make_signed_worker: MakeWorker,
    autoscaler: tuple[Autoscaler, str],
    http: aiohttp.ClientSession,
    receiver: tuple[Receiver, str],
) -> None:
    scaler, _ = autoscaler
    rec, url = receiver
    rec.redirect_to = url + "/closed"  # allowed too: still not followed
    worker = await make_signed_worker(VESPID_ON_CLOSE_HOSTS="127.0.0.1")
    status, created, auth = await open_session(http, scaler, worker, url + "/hop")
    assert status == 201
    await end_session(http, worker, created["session_id"], auth)
    sessions = worker.worker.sessions
    await wait_until(lambda: sessions.callbacks_delivered == 1)
    assert [path for path, _ in rec.received] == ["/hop"]


async def test_a_worker_never_calls_its_own_ports(
    make_worker: MakeWorker,
    autoscaler: tuple[Autoscaler, str],
    http: aiohttp.ClientSession,
) -> None:
    """Even with loopback allowed, a callback to the worker's own ports (its port, the
    /session/end port, the null worker's /release) is refused at /session/create."""
    scaler, scaler_url = autoscaler
    worker = await make_worker(
        BACKEND="null", REPORT_ADDR=scaler_url, NULL_CONTROL_PORT="0", MAX_SESSIONS="3",
        VESPID_ON_CLOSE_HOSTS="127.0.0.1,localhost",
    )  # fmt: skip
    served = worker.served
    status, neighbour, _ = await open_session(http, scaler, worker, None)
    assert status == 201
    for port, path in [(served.control_port, "/release"), (served.http_port, "/session/end"),
                       (served.port, "/session/end")]:  # fmt: skip
        for host in ("127.0.0.1", "localhost", "0.0.0.0"):
            route = f"http://{host}:{port}{path}"
            status, body, auth = await open_session(http, scaler, worker, route)
            if host == "localhost":
                # A name is checked when it is resolved: the session opens, its callback
                # is refused when it is due, and nothing else is touched.
                assert status == 201, body
                await end_session(http, worker, body["session_id"], auth)
            else:
                assert status == 422, body
    sessions = worker.worker.sessions
    await wait_until(lambda: sessions.callbacks_failed == 3)
    assert sessions.callbacks_delivered == 0
    assert list(sessions.sessions) == [neighbour["session_id"]]


async def test_release_ends_only_the_session_it_names(
    make_worker: MakeWorker,
    autoscaler: tuple[Autoscaler, str],
    http: aiohttp.ClientSession,
) -> None:
    scaler, scaler_url = autoscaler
    worker = await make_worker(
        BACKEND="null", REPORT_ADDR=scaler_url, NULL_CONTROL_PORT="0", MAX_SESSIONS="2"
    )
    control = f"http://127.0.0.1:{worker.served.control_port}/release"
    _, first, _ = await open_session(http, scaler, worker, None)
    _, second, _ = await open_session(http, scaler, worker, None)
    for body in (None, {}, {"session_id": 7}, {"session_id": "unknown"}, [1]):
        async with http.post(control, json=body) as r:
            assert r.status in (200, 422)
            assert (await r.json()).get("released") in (None, False)
    assert len(worker.worker.sessions.sessions) == 2
    async with http.post(control, json={"session_id": first["session_id"]}) as r:
        assert await r.json() == {"released": True, "session_ids": [first["session_id"]]}
    assert list(worker.worker.sessions.sessions) == [second["session_id"]]
