"""Inputs that used to raise inside the worker (a 500, or no answer at all from the lean
front): each is now a JSON 4xx that says what to fix, and a malformed request is logged in
one short line, not a traceback."""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
import orjson
import pytest

from tests.support.servers import Autoscaler
from tests.worker.conftest import MakeWorker, RunningWorker, envelope
from tests.worker.rawhttp import Reply, exchange
from vespid.worker.lifecycle import WorkerState

DEEP = 1000  # deeper than any JSON encoder recurses
NESTED = 300  # deeper than orjson serialises


def nested(depth: int) -> bytes:
    """A JSON object ``depth`` levels deep, as bytes (no encoder needed)."""
    return b'{"a":' * depth + b"1" + b"}" * depth


def deep_value(depth: int) -> Any:
    return orjson.loads(nested(depth))


def raw_envelope(auth: dict[str, Any], payload: bytes) -> bytes:
    return b'{"auth_data":' + json.dumps(auth).encode() + b',"payload":' + payload + b"}"


def post(path: str, body: bytes, *extra: str, chunked: bool = False) -> bytes:
    """A raw POST; ``chunked`` sends the body chunked, which the front hands to aiohttp."""
    if chunked:
        head = [f"POST {path} HTTP/1.1", "Host: w", "Transfer-Encoding: chunked", *extra]
        framed = b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body)
        return ("\r\n".join(head) + "\r\n\r\n").encode() + framed
    head = [f"POST {path} HTTP/1.1", "Host: w", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def assert_json_4xx(reply: Reply | None, *words: str) -> dict[str, Any]:
    assert reply is not None, "the worker closed the connection without an answer"
    assert 400 <= reply.status < 500, (reply.status, reply.body[:300])
    assert reply.headers.get(b"content-type", b"").startswith(b"application/json"), reply.headers
    body = reply.json()
    assert isinstance(body, dict)
    for word in words:
        assert word in body["error"], body
    return body


@pytest.fixture
async def signed(
    make_signed_worker: MakeWorker, autoscaler: tuple[Autoscaler, str]
) -> tuple[Autoscaler, RunningWorker]:
    scaler, _ = autoscaler
    worker = await make_signed_worker(MASTER_TOKEN="m-token")
    await worker.wait_state(WorkerState.READY)
    return scaler, worker


@pytest.mark.parametrize("chunked", [False, True], ids=["front", "aiohttp"])
async def test_a_payload_nested_1000_deep_is_a_422(
    signed: tuple[Autoscaler, RunningWorker], chunked: bool
) -> None:
    scaler, worker = signed
    body = raw_envelope(scaler.sign_for(worker.url), nested(DEEP))
    reply = await exchange(worker.port, post("/echo", body, chunked=chunked))
    assert_json_4xx(reply, "nested")


async def test_a_body_that_does_not_decode_as_its_content_encoding_says_is_a_400(
    signed: tuple[Autoscaler, RunningWorker],
) -> None:
    """Regression: ``Content-Encoding: gzip`` on a body that is not gzip gave a 500 with a
    traceback on the aiohttp-served routes; the worker keeps serving after the 400."""
    _, worker = signed
    for path in ("/session/create", "/echo"):
        request = post(path, b"not gzip at all", "Content-Encoding: gzip", chunked=True)
        assert_json_4xx(await exchange(worker.port, request), "malformed")
    reply = await exchange(worker.port, b"GET /metrics HTTP/1.1\r\nHost: w\r\n\r\n")
    assert reply is not None
    assert reply.status == 200


@pytest.mark.parametrize("chunked", [False, True], ids=["front", "aiohttp"])
async def test_a_payload_orjson_cannot_write_is_relayed_whole(
    signed: tuple[Autoscaler, RunningWorker], chunked: bool
) -> None:
    """Deeper than orjson writes (254), not too deep to pass on: the backend gets it."""
    scaler, worker = signed
    body = raw_envelope(scaler.sign_for(worker.url), nested(NESTED))
    reply = await exchange(worker.port, post("/echo", body, chunked=chunked))
    assert reply is not None
    assert reply.status == 200
    echoed = reply.json()
    assert isinstance(echoed, dict)
    assert echoed["body"].encode() == nested(NESTED)


async def test_a_deep_on_close_payload_is_a_422(
    signed: tuple[Autoscaler, RunningWorker],
) -> None:
    scaler, worker = signed
    payload = b'{"lifetime":60,"on_close_payload":' + nested(NESTED) + b"}"
    body = raw_envelope(scaler.sign_for(worker.url), payload)
    reply = await exchange(worker.port, post("/session/create", body))
    assert_json_4xx(reply, "on_close_payload")


async def test_deep_extra_auth_data_opens_no_session_and_breaks_nothing(
    signed: tuple[Autoscaler, RunningWorker],
) -> None:
    """An extra auth_data field 300 deep: the session's canonical key cannot be written,
    so /session/create refuses it (422); the passthrough, which keeps extra fields
    without writing them, serves it."""
    scaler, worker = signed
    for chunked in (False, True):
        auth = {**scaler.sign_for(worker.url), "extra": deep_value(NESTED)}
        body = raw_envelope(auth, b'{"lifetime":60}')
        reply = await exchange(worker.port, post("/session/create", body, chunked=chunked))
        assert_json_4xx(reply, "auth_data", "nested")
        auth = {**scaler.sign_for(worker.url), "extra": deep_value(NESTED)}
        reply = await exchange(worker.port, post("/echo", raw_envelope(auth, b"{}")))
        assert reply is not None
        assert reply.status == 200


async def test_a_deep_session_auth_is_a_4xx(
    signed: tuple[Autoscaler, RunningWorker], http: aiohttp.ClientSession
) -> None:
    scaler, worker = signed
    create = envelope(scaler.sign_for(worker.url), {"lifetime": 60})
    async with http.post(worker.url + "/session/create", json=create) as r:
        assert r.status == 201
        sid = (await r.json())["session_id"]
    ref = b'{"session_id":"' + sid.encode() + b'","session_auth":' + nested(NESTED) + b"}"
    for path in ("/session/get", "/session/health", "/session/end"):
        assert_json_4xx(await exchange(worker.port, post(path, ref)))
    http_port = worker.served.http_port
    assert_json_4xx(await exchange(http_port, post("/session/end", ref)))


@pytest.mark.parametrize(
    "route", ["http://[::1/x", "http://[zz]/x", "http:///x", "ftp://example.com/", 7]
)
async def test_a_malformed_on_close_route_is_a_422(
    signed: tuple[Autoscaler, RunningWorker], route: Any
) -> None:
    scaler, worker = signed
    body = orjson.dumps(
        envelope(scaler.sign_for(worker.url), {"lifetime": 60, "on_close_route": route})
    )
    body_json = assert_json_4xx(await exchange(worker.port, post("/session/create", body)))
    assert "on_close_route" in body_json["error"]


async def test_a_non_utf8_authorization_header_is_a_401(
    signed: tuple[Autoscaler, RunningWorker],
) -> None:
    _, worker = signed
    request = (
        b"POST /pyworker/update HTTP/1.1\r\nHost: w\r\nContent-Length: 0\r\n"
        b"Authorization: Bearer \xff\xfe\xc3\x28\r\n\r\n"
    )
    reply = await exchange(worker.port, request)
    assert_json_4xx(reply, "MASTER_TOKEN")
    assert reply is not None
    assert reply.status == 401
    assert not worker.worker.update.is_set()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.1\r\nHost: w\r\nContent-Length: x\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: w\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"GET / HTTP/1.1\r\nHo st: w\r\n\r\n",
        b"BREW / HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ],
    ids=["bad-length", "two-lengths", "bad-name", "bad-method", "tls-hello"],
)
async def test_framing_errors_answer_json_and_log_one_short_line(
    signed: tuple[Autoscaler, RunningWorker],
    caplog: pytest.LogCaptureFixture,
    request_bytes: bytes,
) -> None:
    _, worker = signed
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            reply = await exchange(worker.port, request_bytes)
            assert_json_4xx(reply)
    bad = [r for r in caplog.records if r.name in ("aiohttp.server", "vespid.worker")]
    assert all(r.exc_info is None for r in bad), [r.getMessage() for r in bad]
    assert all(len(r.getMessage()) < 300 for r in bad)
    assert len(bad) <= 1, [r.getMessage() for r in bad]  # rate-limited: three requests, one line
