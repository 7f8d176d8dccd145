"""Findings 7, 11 and 12 on the control plane's port: late headers and bodies are closed
(408), connections are bounded, and malformed requests, non-UTF-8 keys and deeply nested
bodies get a JSON 4xx (never a 500, never a hang), each logged in one rate-limited line;
a connection over the bound is answered 503 and closed, as on every port."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import time
from typing import Any

import aiohttp
import orjson
import pytest

from tests.control.attack import host_port, raw_exchange, read_answer
from tests.control.conftest import MakeControl, admin
from vespid.control.app import ControlPlane
from vespid.guard import MALFORMED_LOG_EVERY_S


async def _trickle(url: str, head: bytes, data: bytes) -> tuple[int, bytes]:
    """Send ``head``, then ``data`` a byte at a time until the server closes; (bytes of
    ``data`` sent, what came back)."""
    host, port = host_port(url)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(head)
    sent = 0
    try:
        async with asyncio.timeout(30):
            while not reader.at_eof():
                if sent < len(data):
                    writer.write(data[sent : sent + 1])
                    sent += 1
                with_answer = asyncio.ensure_future(reader.read(65536))
                done, _ = await asyncio.wait([with_answer], timeout=0.05)
                if done:
                    answer = with_answer.result()
                    return sent, answer + await reader.read()
                with_answer.cancel()
        raise AssertionError("unreachable")
    finally:
        writer.close()


async def test_late_headers_and_bodies_are_closed_with_408(
    make_control: MakeControl,
) -> None:
    control = await make_control(header_timeout_s=0.5, body_timeout_s=0.5)
    slow_head = b"X-Pad: " + b"a" * 10_000
    slow_body = b" " * 100_000
    head = (b"POST /route/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n")  # fmt: skip
    results = await asyncio.gather(
        *(_trickle(control.url, b"GET /api/v0/status HTTP/1.1\r\n", slow_head)
          for _ in range(20)),
        *(_trickle(control.url, head + b"\r\n", slow_body) for _ in range(20)),
    )  # fmt: skip
    for (sent, answer), setting in zip(
        results, ["VESPID_HEADER_TIMEOUT_S"] * 20 + ["VESPID_BODY_TIMEOUT_S"] * 20, strict=True
    ):
        assert sent < 10_000  # closed long before the request was whole
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), answer[:200]
        error = orjson.loads(body)
        assert error["code"] == "request_timeout"
        assert setting in error["error"]
    # The port still serves.
    status = await raw_exchange(control.url, b"GET /api/v0/status HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status.status == 200


async def test_connections_beyond_the_bound_are_answered_503_and_closed(
    make_control: MakeControl,
) -> None:
    control = await make_control(max_connections=5, header_timeout_s=60)
    host, port = host_port(control.url)
    conns = [await asyncio.open_connection(host, port) for _ in range(12)]
    try:
        async with asyncio.timeout(20):
            closed = await asyncio.gather(*(reader.read() for reader, _ in conns[5:]))
        # Answered and closed as they opened (read() ends), while the first 5 are held.
        for answer in closed:
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503"), answer[:200]
            error = orjson.loads(body)
            assert error["code"] == "too_many_connections"
            assert "VESPID_MAX_CONNECTIONS" in error["error"]
    finally:
        for _, writer in conns:
            writer.close()
    async with asyncio.timeout(20):  # the held ones gone, the port serves again
        while True:
            with contextlib.suppress(asyncio.IncompleteReadError):  # closed: still full
                request = b"GET /pubkey/ HTTP/1.1\r\nHost: x\r\n\r\n"
                if (await raw_exchange(control.url, request)).status == 200:
                    break
            await asyncio.sleep(0.05)


def _nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


async def test_odd_keys_and_deep_bodies_are_json_4xx(
    make_control: MakeControl,
    http: aiohttp.ClientSession,
) -> None:
    control = await make_control(route_hold_s=0)
    _, ep = await admin(http, control, "POST", "/api/v0/endpoints",
                        {"name": "e", "scaling": {"max_workers": 0}})  # fmt: skip
    tried = 0
    for path, method in (("/route/", "POST"), ("/api/v0/endpoints", "GET"),
                         ("/api/v0/endpoints", "POST"), ("/api/v0/endptjobs/", "GET"),
                         ("/api/v0/endpoints/e", "DELETE")):  # fmt: skip
        for key in (b"\xff\xfe\xfd", b"Bearer \xc3\x28", b"Bearer \x80" * 50):
            body = b'{"endpoint": "e", "cost": 1}'
            request = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                       f"\r\nContent-Length: {len(body)}\r\n").encode()  # fmt: skip
            answer = await raw_exchange(control.url, request + b"Authorization: " + key +
                                        b"\r\n\r\n" + body)  # fmt: skip
            assert answer.status in (401, 422), (path, key, answer.body)
            assert answer.json()["code"]
            tried += 1
    key = ep["api_key"]
    deep_bodies: list[tuple[str, Any]] = [
        ("/route/", {"endpoint": "e", "api_key": key, "cost": 1, "extra": _nested(300)}),
        ("/route/", {"endpoint": _nested(300), "api_key": key, "cost": 1}),
        ("/route/", {"endpoint": "e", "api_key": _nested(300, "k"), "cost": 1}),
        ("/route/", {"endpoint": "e", "api_key": key, "cost": _nested(300)}),
        ("/worker_status/", {"id": 1, "mtoken": _nested(300, "t")}),
        ("/worker_status/", {"id": _nested(300), "mtoken": "t"}),
        ("/delete_requests/", {"worker_id": 1, "mtoken": "t", "requests": _nested(300)}),
    ]
    for path, body in deep_bodies:
        async with http.post(control.url + path, data=json.dumps(body)) as resp:
            assert 400 <= resp.status < 500, (path, await resp.text())
            assert "error" in await resp.json()
            tried += 1
    for depth in (1000, 5000):  # past what a JSON parser nests
        raw = b'{"endpoint": "e", "api_key": "%s", "cost": 1, "x": %s%s}' % (
            key.encode(), b"[" * depth, b"]" * depth)  # fmt: skip
        for path in ("/route/", "/worker_status/", "/api/v0/endpoints"):
            async with http.post(
                control.url + path,
                data=raw,
                headers={"Authorization": f"Bearer {control.admin_key}"},
            ) as resp:
                assert 400 <= resp.status < 500, (path, depth)
                assert "error" in await resp.json()
                tried += 1
    for endpoint in (
        {"name": "d", "template": {"env": {"A": _nested(300, "x")}}},
        {"name": _nested(300, "x")},
        {"name": "d", "scaling": _nested(300)},
    ):
        code, err = await admin(http, control, "POST", "/api/v0/endpoints", endpoint)
        assert (code, "error" in err) == (422, True)
        tried += 1
    assert tried == 15 + 7 + 6 + 3


MALFORMED = [
    b"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
    b"G\x00T / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /route/ HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
    b"POST /route/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
    b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    b"POST /route/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
]


async def test_malformed_requests_are_json_and_one_rate_limited_line(
    make_control: MakeControl,
    caplog: pytest.LogCaptureFixture,
) -> None:
    control = await make_control()
    caplog.set_level(logging.DEBUG)
    began = time.monotonic()
    for _ in range(5):
        for request in MALFORMED:
            answer = await raw_exchange(control.url, request)
            assert 400 <= answer.status < 500, (request[:60], answer.body[:200])
            assert answer.json()["code"], request[:60]
    elapsed_s = time.monotonic() - began
    lines = [r for r in caplog.records if "malformed request" in r.getMessage()]
    assert 1 <= len(lines) <= elapsed_s / MALFORMED_LOG_EVERY_S + 1  # one every 10 s at most
    assert all(r.exc_info is None for r in caplog.records if r.name.startswith("aiohttp"))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def _framework_refusals(control: ControlPlane, session: aiohttp.ClientSession) -> None:
    async with session.get(control.url + "/nowhere") as resp:
        assert (resp.status, (await resp.json())["code"]) == (404, "not_found")
    async with session.delete(control.url + "/route/") as resp:
        assert (resp.status, (await resp.json())["code"]) == (405, "method_not_allowed")
    async with session.post(
        control.url + "/route/", data=io.BytesIO(b"x" * (2 * 1024 * 1024))
    ) as resp:
        assert resp.status == 413
        assert "1048576" in (await resp.json())["error"]


async def test_aiohttps_own_refusals_are_json(
    make_control: MakeControl,
    http: aiohttp.ClientSession,
) -> None:
    await _framework_refusals(await make_control(), http)


async def test_header_line_and_declared_body_limits_follow_the_settings(
    make_control: MakeControl,
) -> None:
    control = await make_control(max_headers=10, max_request_line_bytes=300,
                                 max_header_bytes=2048)  # fmt: skip
    start = b"GET /api/v0/status HTTP/1.1\r\nHost: x\r\n"
    cases = [
        (start + b"".join(b"X-H%d: v\r\n" % i for i in range(20)), 431, "VESPID_MAX_HEADERS"),
        (start + b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 400) for i in range(8)), 431,
         "VESPID_MAX_HEADER_BYTES"),
        (b"GET /api/v0/status?q=" + b"c" * 400 + b" HTTP/1.1\r\nHost: x\r\n", 414,
         "VESPID_MAX_REQUEST_LINE_BYTES"),
        (b"POST /route/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n", 413, "1048576"),
    ]  # fmt: skip
    host, port = host_port(control.url)
    for request, status, named in cases:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(request + b"\r\n")
            async with asyncio.timeout(10):
                answer = await read_answer(reader)
                assert answer.status == status, (named, answer.body[:200])
                assert named in answer.json()["error"]
                assert await reader.read() == b""  # and the connection is closed
        finally:
            writer.close()
