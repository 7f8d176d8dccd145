"""What one client can make the worker hold, on each of its ports (the lean front, aiohttp
on the /session/end port, the null worker's control port): headers are capped (431), as
are the request target (414) and a declared body (413, from the header, before any of
it is sent); a head or body that arrives too slowly is answered 408 and closed; a port
holds a bounded number of connections (503 beyond). A header of hundreds of MiB is cut
off after the cap, so memory stays flat."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import tracemalloc

import pytest

from tests.support.servers import Autoscaler
from tests.worker.conftest import MakeWorker
from tests.worker.rawhttp import Reply, exchange, read_reply

PORTS = ["front", "session-end", "null-control"]


@pytest.fixture
async def workers(
    make_signed_worker: MakeWorker, make_worker: MakeWorker, autoscaler: tuple[Autoscaler, str]
) -> dict[str, tuple[int, str]]:
    """Each kind of port with a path it serves: {name: (port, path)}, every one with
    short timeouts and a small connection cap."""
    _, scaler_url = autoscaler
    limits = {"VESPID_HEADER_TIMEOUT_S": "0.5", "VESPID_BODY_TIMEOUT_S": "0.5",
              "VESPID_MAX_CONNECTIONS": "8", "VESPID_MAX_BODY_BYTES": "65536"}  # fmt: skip
    signed = await make_signed_worker(**limits)
    null = await make_worker(
        BACKEND="null", REPORT_ADDR=scaler_url, NULL_CONTROL_PORT="0", **limits
    )
    assert signed.served.front is not None
    control = null.served.control_port
    assert control is not None
    return {
        "front": (signed.port, "/echo"),
        "session-end": (signed.served.http_port, "/session/end"),
        "null-control": (control, "/release"),
    }


def head(path: str, *lines: str, length: int | None = 2) -> bytes:
    extra = [f"Content-Length: {length}"] if length is not None else []
    return ("\r\n".join([f"POST {path} HTTP/1.1", "Host: w", *extra, *lines]) + "\r\n\r\n").encode()


def assert_refused(reply: Reply | None, status: int, setting: str) -> None:
    assert reply is not None, "closed without an answer"
    assert reply.status == status, (reply.status, reply.body[:200])
    assert reply.headers[b"content-type"].startswith(b"application/json")
    error = reply.json()
    assert isinstance(error, dict)
    assert setting in error["error"], error


@pytest.mark.parametrize("port_name", PORTS)
async def test_header_limits(workers: dict[str, tuple[int, str]], port_name: str) -> None:
    port, path = workers[port_name]
    big = head(path, "X-Big: " + "a" * (8 * 1024 * 1024)) + b"{}"
    assert_refused(await exchange(port, big), 431, "VESPID_MAX_HEADER_BYTES")
    many = head(path, *(f"X-H{i}: v" for i in range(200))) + b"{}"
    assert_refused(await exchange(port, many), 431, "VESPID_MAX_HEADERS")
    spread = head(path, *(f"X-H{i}: {'b' * 2000}" for i in range(60))) + b"{}"
    assert_refused(await exchange(port, spread), 431, "VESPID_MAX_HEADER_BYTES")
    long_target = head(path + "?q=" + "c" * 20000) + b"{}"
    assert_refused(await exchange(port, long_target), 414, "VESPID_MAX_REQUEST_LINE_BYTES")


@pytest.mark.parametrize("port_name", PORTS)
async def test_a_declared_body_over_the_limit_is_refused_from_the_header(
    workers: dict[str, tuple[int, str]], port_name: str
) -> None:
    port, path = workers[port_name]
    # Only the head is sent: the answer cannot wait for the body.
    reply = await exchange(port, head(path, length=10**12))
    assert reply is not None
    assert reply.status == 413


@pytest.mark.parametrize("port_name", PORTS)
async def test_slow_heads_and_bodies_are_answered_408_and_closed(
    workers: dict[str, tuple[int, str]], port_name: str
) -> None:
    port, path = workers[port_name]
    partial_head = head(path)[:-4]  # never finished
    partial_body = head(path, length=100) + b'{"a":'
    cases = [(partial_head, "VESPID_HEADER_TIMEOUT_S"), (b"", "VESPID_HEADER_TIMEOUT_S"),
             (partial_body, "VESPID_BODY_TIMEOUT_S")]  # fmt: skip
    for sent, setting in cases:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(sent)
            reply = await read_reply(reader, timeout_s=10)
            if sent:
                assert_refused(reply, 408, setting)
            else:
                assert reply is None or reply.status == 408  # a silent connection: closed
            assert await reader.read() == b""  # and the connection is closed
        finally:
            writer.close()


@pytest.mark.parametrize("port_name", PORTS)
async def test_a_port_holds_a_bounded_number_of_connections(
    workers: dict[str, tuple[int, str]], port_name: str
) -> None:
    port, path = workers[port_name]
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(8)]
    try:
        await asyncio.sleep(0)  # let the worker accept them
        reply = await exchange(port, head(path) + b"{}")
        assert_refused(reply, 503, "VESPID_MAX_CONNECTIONS")
    finally:
        for _, writer in held:
            writer.close()


@pytest.mark.parametrize("port_name", PORTS)
async def test_a_300_mib_header_is_cut_off_with_flat_memory(
    workers: dict[str, tuple[int, str]], port_name: str
) -> None:
    """The client sends a header of up to 300 MiB in 1 MiB pieces; the worker answers 431
    and closes long before, having traced well under 4 MiB more at its peak."""
    port, path = workers[port_name]
    piece = b"a" * (1024 * 1024)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head(path)[:-4] + b"\r\nX-Big: ")
        sent = 0
        with contextlib.suppress(ConnectionError):
            while sent < 300:
                writer.write(piece)
                await writer.drain()
                sent += 1
        try:
            reply = await read_reply(reader, timeout_s=10)
        except ConnectionError:
            reply = None  # the answer came while the client was still sending
        writer.close()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert reply is None or reply.status == 431
    assert sent < 300, "the worker read the whole header"
    assert peak < 4 * 1024 * 1024, f"traced memory rose by {peak} bytes"
