"""The worker's HTTP/1.1 client for the backend, against real servers on 127.0.0.1.

Most servers here are raw asyncio streams that write exact bytes, so that each
framing (Content-Length, chunked, close-delimited), each early close and each
silence happens exactly when the test says; aiohttp serves the plain cases.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
import pytest
import uvloop
from aiohttp import web

from tests.support.servers import ScriptedBackend, start_app
from tests.support.waiting import wait_until
from tests.worker.conftest import MakeWorker, envelope
from vespid.servers.process import free_port
from vespid.worker.backend_client import (
    HIGH_WATER,
    BackendClient,
    BrokenBody,
    ConnectFailed,
    InvalidResponse,
    ReadTimeout,
    ServerDisconnected,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

OK_2 = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


class RawServer:
    """A TCP server whose every connection runs ``handler``; counts what it sees."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.url = ""
        self.connections = 0  # accepted so far
        self.open = 0  # open now
        self.eof_seen = asyncio.Event()  # a client closed its side
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.append(writer)
        self.connections += 1
        self.open += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open -= 1
            writer.close()
            self._tasks.discard(task)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[RawServer]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        try:
            yield self
        finally:
            server.close()
            for writer in self._writers:
                writer.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request as the client sent it: (head, body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    body = await reader.readexactly(int(match.group(1))) if match else b""
    return head, body


async def wait_eof(server: RawServer, reader: asyncio.StreamReader) -> None:
    """Read until the client closes or resets the connection, then flag it."""
    try:
        while await reader.read(65536):
            pass
    finally:
        server.eof_seen.set()


def answering(*responses: bytes, then_close: bool = False) -> Handler:
    """A handler that answers each request on a connection with the next response."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for response in responses:
            await read_request(reader)
            writer.write(response)
            await writer.drain()
        if then_close:
            return
        await reader.read()  # until the client closes

    return handler


@asynccontextmanager
async def client_for(url: str, **kwargs: Any) -> AsyncIterator[BackendClient]:
    client = BackendClient(url, **kwargs)
    try:
        yield client
    finally:
        await client.close()


# -- plain requests and keep-alive ----------------------------------------------------


async def test_request_is_built_as_given_and_connection_is_reused() -> None:
    seen: list[tuple[bytes, bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                seen.append(await read_request(reader))
            except asyncio.IncompleteReadError:
                return
            writer.write(OK_2)

    async with RawServer(handler).running() as server, client_for(server.url) as client:
        for n in range(3):
            resp = await client.request(
                "POST", f"/v1/x?n={n}", {"Content-Type": "application/json"}, b'{"a":1}'
            )
            assert (resp.status, resp.content_length, resp.content_type) == (200, 2, "text/plain")
            assert await resp.read() == b"ok"
        assert server.connections == 1
        assert client.connections == 1
    port = server.url.rsplit(":", 1)[1]
    assert seen[2] == (
        b"POST /v1/x?n=2 HTTP/1.1\r\nHost: 127.0.0.1:" + port.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 7\r\n\r\n",
        b'{"a":1}',
    )


async def test_base_url_path_is_a_prefix_and_aiohttp_server_works() -> None:
    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path_qs, "body": (await request.text())})

    app = web.Application()
    app.router.add_route("*", "/{p:.*}", echo)
    async with start_app(app) as url, client_for(url + "/prefix") as client:
        for _ in range(2):
            resp = await client.request("PUT", "/a/b?c=d", None, b"raw")
            assert await resp.read() == b'{"path": "/prefix/a/b?c=d", "body": "raw"}'
        assert client.connections == 1


async def test_connection_closed_by_the_server_while_idle_is_not_reused() -> None:
    async with (
        RawServer(answering(OK_2, then_close=True)).running() as server,
        client_for(server.url) as client,
    ):
        for _ in range(3):
            resp = await client.request("GET", "/")
            assert await resp.read() == b"ok"
            await wait_until(lambda: client.connections == 0)
        assert server.connections == 3


async def test_connection_close_header_is_honoured() -> None:
    response = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    async with (
        RawServer(answering(response, response)).running() as server,
        client_for(server.url) as client,
    ):
        for _ in range(2):
            resp = await client.request("GET", "/")
            assert await resp.read() == b"ok"
        assert server.connections == 2


async def test_idle_connections_older_than_keepalive_are_replaced() -> None:
    async with (
        RawServer(answering(OK_2, OK_2)).running() as server,
        client_for(server.url, keepalive_s=0.05) as client,
    ):
        assert await (await client.request("GET", "/")).read() == b"ok"
        await asyncio.sleep(0.1)
        assert await (await client.request("GET", "/")).read() == b"ok"
        assert server.connections == 2


# -- bodies ---------------------------------------------------------------------------


async def test_chunked_body_is_relayed_as_it_arrives_and_connection_reused() -> None:
    go_on = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n7\r\ndata: 1\r\n"
        )
        await go_on.wait()
        writer.write(b"7\r\ndata: 2\r\n0\r\n\r\n")
        await read_request(reader)
        writer.write(OK_2)
        await reader.read()

    async with RawServer(handler).running() as server, client_for(server.url) as client:
        resp = await client.request("POST", "/stream", None, b"{}")
        assert (resp.status, resp.content_length, resp.content_type) == (
            200,
            None,
            "text/event-stream",
        )
        assert await asyncio.wait_for(resp.read_chunk(), 5) == b"data: 1"
        go_on.set()
        assert await resp.read_chunk() == b"data: 2"
        assert await resp.read_chunk() == b""
        resp.release()
        assert await (await client.request("GET", "/")).read() == b"ok"
        assert server.connections == 1


async def test_close_delimited_body_is_read_to_the_end_and_not_reused() -> None:
    go_on = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n\r\n{}\n")
        await go_on.wait()
        writer.write(b"{}\n")
        await writer.drain()
        # The handler returns: the connection is closed, which ends the body.

    async with RawServer(handler).running() as server, client_for(server.url) as client:
        resp = await client.request("POST", "/")
        assert resp.content_length is None
        assert await asyncio.wait_for(resp.read_chunk(), 5) == b"{}\n"
        go_on.set()
        pieces = [piece async for piece in _pieces(resp.read_chunk)]
        assert b"".join(pieces) == b"{}\n"
        resp.release()
        await wait_until(lambda: client.connections == 0)
        # A whole read of the same kind of answer works too.
        go_on.set()
        resp = await client.request("POST", "/")
        assert await resp.read() == b"{}\n{}\n"
        assert server.connections == 2


async def _pieces(read: Callable[[], Awaitable[bytes]]) -> AsyncIterator[bytes]:
    while piece := await read():
        yield piece


async def test_head_and_bodiless_statuses_end_at_the_headers() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"
    no_content = b"HTTP/1.1 204 No Content\r\n\r\n"
    not_modified = b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n"
    async with (
        RawServer(answering(head, no_content, not_modified, OK_2)).running() as server,
        client_for(server.url) as client,
    ):
        resp = await client.request("HEAD", "/")
        assert (resp.status, resp.content_length) == (200, 5)
        assert await asyncio.wait_for(resp.read(), 5) == b""
        resp = await client.request("DELETE", "/")
        assert resp.status == 204
        assert await asyncio.wait_for(resp.read_chunk(), 5) == b""
        resp.release()
        resp = await client.request("GET", "/")
        assert resp.status == 304
        assert await asyncio.wait_for(resp.read(), 5) == b""
        assert await (await client.request("GET", "/")).read() == b"ok"
        assert server.connections == 1  # each of those left the connection reusable


async def test_interim_1xx_answers_are_skipped() -> None:
    response = b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n" + OK_2
    async with (
        RawServer(answering(response, OK_2)).running() as server,
        client_for(server.url) as client,
    ):
        resp = await client.request("GET", "/")
        assert resp.status == 200
        assert resp.header(b"link") is None
        assert await resp.read() == b"ok"
        assert await (await client.request("GET", "/")).read() == b"ok"
        assert server.connections == 1


async def test_bytes_beyond_the_response_spoil_the_connection() -> None:
    extra = b"HTTP/1.1 200 OK\r\nX-Extra: 1\r\nContent-Length: 0\r\n\r\n"
    async with (
        RawServer(answering(OK_2 + extra, OK_2)).running() as server,
        client_for(server.url) as client,
    ):
        resp = await client.request("GET", "/")
        assert await resp.read() == b"ok"
        assert resp.header(b"x-extra") is None
        assert await (await client.request("GET", "/")).read() == b"ok"
        assert server.connections == 2


async def test_slow_reader_pauses_the_backend() -> None:
    """A reader that does not keep up leaves at most about HIGH_WATER bytes waiting
    here; the rest stays in the backend, whose writes block."""
    total = 8 * 1024 * 1024
    piece = b"x" * 16384
    sent = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while sent < total:
            writer.write(b"4000\r\n" + piece + b"\r\n")
            sent += len(piece)
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with (
        RawServer(handler).running() as server,
        client_for(server.url, read_timeout_s=0.1) as client,
    ):
        resp = await client.request("GET", "/")
        received = len(await resp.read_chunk())
        # A client that does not read for a while; the backend is not silent, we are
        # not listening, so that is no read timeout.
        await asyncio.sleep(0.3)
        # The socket buffers hold some; the rest has not left the backend.
        assert sent < total / 2
        most_held = 0
        while chunk := await resp.read_chunk():
            received += len(chunk)
            most_held = max(most_held, len(chunk))
        assert received == total
        assert most_held <= HIGH_WATER + 256 * 1024  # one socket read beyond the mark
        resp.release()
        assert client.connections == 1
        assert server.connections == 1


# -- failures -------------------------------------------------------------------------


async def test_connection_refused() -> None:
    async with client_for(f"http://127.0.0.1:{free_port()}") as client:
        with pytest.raises(ConnectFailed, match=r"cannot connect to 127\.0\.0\.1"):
            await client.request("GET", "/")
        assert client.connections == 0


async def test_backend_closing_before_answering() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async with RawServer(handler).running() as server, client_for(server.url) as client:
        with pytest.raises(ServerDisconnected, match="before answering"):
            await client.request("POST", "/", None, b"{}")


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this", id="length"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nsome\r\n", id="chunked"
        ),
    ],
)
async def test_backend_closing_mid_body_is_a_broken_body(response: bytes) -> None:
    async with (
        RawServer(answering(response, then_close=True)).running() as server,
        client_for(server.url) as client,
    ):
        resp = await client.request("GET", "/")
        if resp.content_length is None:
            assert await resp.read_chunk() == b"some"
        with pytest.raises(BrokenBody, match="middle of the body"):
            await (resp.read_chunk() if resp.content_length is None else resp.read())
        resp.release()
        assert client.connections == 0


async def test_invalid_response() -> None:
    async with (
        RawServer(answering(b"SPDY/9 200 WHAT\r\n\r\n")).running() as server,
        client_for(server.url) as client,
    ):
        with pytest.raises(InvalidResponse, match="not valid HTTP"):
            await client.request("GET", "/")
        await wait_until(lambda: client.connections == 0)


async def test_endless_headers_are_an_invalid_response() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for n in range(10_000):
            writer.write(b"X-Filler-%d: %s\r\n" % (n, b"y" * 100))
            await writer.drain()
        await reader.read()

    async with RawServer(handler).running() as server, client_for(server.url) as client:
        with pytest.raises(InvalidResponse, match="headers beyond"):
            await client.request("GET", "/")


async def test_read_timeout_is_silence_not_total_time() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, _ = await read_request(reader)
            if b"/silent" in head:
                await reader.read()
                return
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(6):  # 0.6 s in all, never 0.3 s without a byte
                await asyncio.sleep(0.1)
                writer.write(b"1\r\nx\r\n")
            if b"/stall" in head:
                await reader.read()
                return
            writer.write(b"0\r\n\r\n")

    async with RawServer(handler).running() as server, client_for(server.url) as client:
        client.read_timeout_s = 0.3
        with pytest.raises(ReadTimeout, match=r"no data from the backend for 0.3 s"):
            await asyncio.wait_for(client.request("GET", "/silent"), 5)
        resp = await client.request("GET", "/trickle")
        assert await asyncio.wait_for(resp.read(), 5) == b"x" * 6
        resp = await client.request("GET", "/stall")
        with pytest.raises(ReadTimeout, match="response body"):
            await asyncio.wait_for(resp.read(), 5)
        resp.release()
        assert server.connections == 2  # the trickle's connection was reused


async def test_cancel_closes_the_connection_at_once() -> None:
    """A caller cancelled while waiting (its client went away) must not leave the
    backend generating: the connection is closed, not pooled."""
    server: RawServer

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, _ = await read_request(reader)
        if b"/stream" in head:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n")
        await wait_eof(server, reader)

    async def cancel_when_waiting(task: asyncio.Task[Any]) -> None:
        await wait_until(lambda: server.open == 1)
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(server.eof_seen.wait(), 2)
        await wait_until(lambda: client.connections == 0)

    async with RawServer(handler).running() as server, client_for(server.url) as client:
        # Waiting for the response headers.
        await cancel_when_waiting(asyncio.create_task(client.request("POST", "/hold")))
        # Waiting for more of a streamed body.
        server.eof_seen.clear()
        resp = await client.request("POST", "/stream")
        assert await resp.read_chunk() == b"x"
        await cancel_when_waiting(asyncio.create_task(resp.read_chunk()))
        resp.release()
        assert server.connections == 2


async def test_pool_bound_holds_callers_in_order() -> None:
    release = asyncio.Event()
    order: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head, _ = await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            order.append(head.split(b" ")[1])
            await release.wait()
            writer.write(OK_2)

    async def get(n: int) -> bytes:
        resp = await client.request("GET", f"/{n}")
        return await resp.read()

    async with RawServer(handler).running() as server, client_for(server.url, limit=2) as client:
        tasks = []
        for n in range(5):
            tasks.append(asyncio.create_task(get(n)))
            await asyncio.sleep(0.01)
        await wait_until(lambda: len(order) == 2)
        await asyncio.sleep(0.05)
        assert len(order) == 2  # the other three wait for a connection
        cancelled = tasks.pop(2)  # a waiter that gives up leaves the line
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        release.set()
        assert await asyncio.gather(*tasks) == [b"ok"] * 4
        assert order == [b"/0", b"/1", b"/3", b"/4"]
        assert server.connections == 2
        assert client.connections == 2


async def test_unbounded_pool_opens_a_connection_per_concurrent_request() -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await release.wait()
        writer.write(OK_2)
        await reader.read()

    async with RawServer(handler).running() as server, client_for(server.url) as client:
        tasks = [asyncio.create_task(client.request("GET", "/")) for _ in range(20)]
        await wait_until(lambda: server.connections == 20)
        release.set()
        for resp in await asyncio.gather(*tasks):
            assert await resp.read() == b"ok"
        assert client.idle_connections == 20


# -- through the worker --------------------------------------------------------------

UNSIGNED = {"cost": 1, "endpoint": "e", "reqnum": 1, "request_idx": 1, "signature": "", "url": ""}


async def test_worker_closes_the_backend_connection_when_its_client_leaves_mid_stream(
    make_worker: MakeWorker,
) -> None:
    """The backend must learn at once that nobody listens any more, so it can stop."""
    server: RawServer

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, _ = await read_request(reader)
            if not head.startswith(b"POST /stream "):
                writer.write(OK_2)  # the worker's health probe
                continue
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n"
            )
            await wait_eof(server, reader)
            return

    async with RawServer(handler).running() as server:
        running = await make_worker(BACKEND_URL=server.url, UNSECURED="true", VESPID_MAX_PERF="100")
        worker = running.worker
        async with aiohttp.ClientSession() as http:
            resp = await http.post(running.url + "/stream", json=envelope(UNSIGNED, {}))
            assert await asyncio.wait_for(resp.content.readany(), 5) == b"data: 1\n\n"
            resp.close()  # the client leaves mid-stream
        await asyncio.wait_for(server.eof_seen.wait(), 5)
        await wait_until(lambda: not worker.books.working)
        assert worker.metrics.requests.labels("499", "cancelled")._value.get() == 1
        assert worker.proxy.client.connections == 0


async def test_worker_relays_head_answers_and_keeps_the_connection(
    make_worker: MakeWorker, backend: tuple[ScriptedBackend, str]
) -> None:
    _, backend_url = backend
    running = await make_worker(BACKEND_URL=backend_url, UNSECURED="true", VESPID_MAX_PERF="100")
    header = {"X-Vespid-Auth": orjson.dumps(UNSIGNED).decode()}
    async with aiohttp.ClientSession() as http:
        for method in ("HEAD", "GET", "HEAD"):
            async with http.request(method, running.url + "/echo", headers=header) as resp:
                assert resp.status == 200
                assert resp.content_type == "application/json"
                body = await resp.read()
            assert (body == b"") is (method == "HEAD")
    assert running.worker.proxy.client.connections == 1


# -- on uvloop --------------------------------------------------------------------


UVLOOP_CASES = [
    test_request_is_built_as_given_and_connection_is_reused,
    test_chunked_body_is_relayed_as_it_arrives_and_connection_reused,
    test_close_delimited_body_is_read_to_the_end_and_not_reused,
    test_slow_reader_pauses_the_backend,
    test_cancel_closes_the_connection_at_once,
    test_pool_bound_holds_callers_in_order,
]


@pytest.mark.parametrize("case", UVLOOP_CASES, ids=lambda f: f.__name__.removeprefix("test_"))
def test_on_uvloop(case: Callable[[], Awaitable[None]]) -> None:
    """The worker runs on uvloop, whose transports differ from the stock loop's."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(asyncio.wait_for(case(), 30))
