"""The lean front on the worker port, against real sockets: keep-alive, pipelining, the
hand-off to aiohttp, the size limit, refusals, streaming and clients that go away."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httptools
import orjson
import pytest

from tests.support.servers import ScriptedBackend
from tests.support.waiting import wait_until
from tests.worker.conftest import RunningWorker
from vespid.worker.app import Worker
from vespid.worker.http11 import message_end
from vespid.worker.lifecycle import WorkerState
from vespid.worker.serve import running_worker
from vespid.worker.settings import load_worker_settings

MAX_BODY = 4000
_idx = itertools.count(1)


def envelope(payload: Any = None, cost: float = 1) -> bytes:
    i = next(_idx)
    auth = {
        "cost": cost,
        "endpoint": "e",
        "reqnum": i,
        "request_idx": i,
        "signature": "",
        "url": "",
    }
    return orjson.dumps({"auth_data": auth, "payload": payload or {"n": i}})


def post(path: str, body: bytes, *extra: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: w", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Responses:
    """Responses read off one raw connection, parsed by httptools."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.done: list[tuple[int, dict[bytes, bytes], bytes]] = []
        self.chunks: list[bytes] = []
        self._headers: dict[bytes, bytes] = {}
        self._parser = httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        self.done.append((status, self._headers, b"".join(self.chunks)))
        self._headers, self.chunks = {}, []

    async def read(
        self, n: int, timeout_s: float = 10.0
    ) -> list[tuple[int, dict[bytes, bytes], bytes]]:
        async with asyncio.timeout(timeout_s):
            while len(self.done) < n:
                data = await self.reader.read(65536)
                if not data:
                    break
                self._parser.feed_data(data)
        return self.done


@pytest.fixture
async def front(
    tmp_path: Path, backend: tuple[ScriptedBackend, str]
) -> AsyncIterator[tuple[RunningWorker, ScriptedBackend]]:
    stand_in, backend_url = backend
    settings = load_worker_settings(
        {
            "WORKER_PORT": "0",
            "VESPID_HOST": "127.0.0.1",
            "VESPID_CACHE_DIR": str(tmp_path / "cache"),
            "VESPID_LOG_LEVEL": "warning",
            "BACKEND_URL": backend_url,
            "UNSECURED": "true",
            "VESPID_MAX_PERF": "100",
            "VESPID_MAX_BODY_BYTES": str(MAX_BODY),
            "ALLOW_PARALLEL": "true",
        }
    )
    async with running_worker(settings) as served:
        assert served.front is not None
        running = RunningWorker(served)
        await running.wait_state(WorkerState.READY)
        yield running, stand_in


async def connect(
    running: RunningWorker,
) -> tuple[asyncio.StreamWriter, Responses]:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    return writer, Responses(reader)


def echoed(body: bytes) -> Any:
    """The payload the backend got, from /echo's answer."""
    return orjson.loads(orjson.loads(body)["body"])


def served(worker: Worker, status: str, outcome: str) -> float:
    value: float = worker.metrics.requests.labels(status, outcome)._value.get()
    return value


async def test_pipelined_requests_answered_in_order_on_one_connection(
    front: tuple[RunningWorker, ScriptedBackend],
) -> None:
    running, _ = front
    writer, responses = await connect(running)
    bodies = [envelope({"i": i}) for i in range(3)]
    writer.write(b"".join(post(f"/echo?i={i}", b) for i, b in enumerate(bodies)))
    got = await responses.read(3)
    assert [status for status, _, _ in got] == [200, 200, 200]
    for i, (_, headers, body) in enumerate(got):
        assert echoed(body) == {"i": i}
        assert orjson.loads(body)["query"] == {"i": str(i)}
        assert headers[b"content-type"].startswith(b"application/json")
    # Kept alive: one more on the same connection.
    writer.write(post("/echo", envelope({"again": True})))
    got = await responses.read(4)
    assert echoed(got[3][2]) == {"again": True}
    assert served(running.worker, "200", "success") == 4
    assert not running.worker.books.working
    writer.close()


async def test_other_routes_after_pipelined_posts_go_to_aiohttp_in_order(
    front: tuple[RunningWorker, ScriptedBackend],
) -> None:
    running, _ = front
    writer, responses = await connect(running)
    writer.write(
        post("/echo", envelope({"first": 1}))
        + b"GET /metrics HTTP/1.1\r\nHost: w\r\n\r\n"
        + post("/echo", envelope({"after": 1}))
    )
    got = await responses.read(3)
    assert [status for status, _, _ in got] == [200, 200, 200]
    assert echoed(got[0][2]) == {"first": 1}
    assert b"vespid_worker_ready 1.0" in got[1][2]
    assert echoed(got[2][2]) == {"after": 1}
    writer.close()


async def test_connection_close_is_honoured(front: tuple[RunningWorker, ScriptedBackend]) -> None:
    running, _ = front
    writer, responses = await connect(running)
    writer.write(post("/echo", envelope(), "Connection: close"))
    got = await responses.read(1)
    assert got[0][0] == 200
    assert got[0][1][b"connection"] == b"close"
    assert await responses.reader.read() == b""  # closed by the worker
    writer.close()


async def test_body_over_the_limit_is_413_json(
    front: tuple[RunningWorker, ScriptedBackend],
) -> None:
    running, stand_in = front
    writer, responses = await connect(running)
    big = envelope({"x": "y" * (MAX_BODY + 10)})
    writer.write(post("/echo", big))
    got = await responses.read(1)
    status, headers, body = got[0]
    assert status == 413
    assert headers[b"content-type"].startswith(b"application/json")
    assert orjson.loads(body)["max_body_bytes"] == MAX_BODY
    assert stand_in.arrivals == []
    writer.close()


async def test_bad_envelope_is_422_json_and_the_connection_stays(
    front: tuple[RunningWorker, ScriptedBackend],
) -> None:
    running, _ = front
    writer, responses = await connect(running)
    writer.write(post("/echo", b"{not json") + post("/echo", b'{"payload": 1}'))
    got = await responses.read(2)
    for status, headers, body in got:
        assert status == 422
        assert headers[b"content-type"] == b"application/json"
        assert "error" in orjson.loads(body)
    writer.write(post("/echo", envelope({"ok": 1})))
    got = await responses.read(3)
    assert got[2][0] == 200
    assert served(running.worker, "422", "refused") == 2
    writer.close()


async def test_malformed_http_is_400_after_the_answers_before_it(
    front: tuple[RunningWorker, ScriptedBackend],
) -> None:
    running, _ = front
    writer, responses = await connect(running)
    writer.write(post("/echo", envelope({"ok": 1})) + b"POST /echo HTTP/1.1\r\nBad Header\r\n\r\n")
    got = await responses.read(2)
    assert got[0][0] == 200
    assert got[1][0] == 400
    writer.close()


async def test_chunked_and_expect_requests_are_served_by_aiohttp(
    front: tuple[RunningWorker, ScriptedBackend],
) -> None:
    running, _ = front
    writer, responses = await connect(running)
    body = envelope({"chunked": 1})
    writer.write(
        b"POST /echo HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body)
    )
    got = await responses.read(1)
    assert got[0][0] == 200
    assert echoed(got[0][2]) == {"chunked": 1}
    writer.close()


async def test_stream_is_relayed_as_it_comes(front: tuple[RunningWorker, ScriptedBackend]) -> None:
    running, stand_in = front
    writer, responses = await connect(running)
    writer.write(post("/stream", envelope()))
    async with asyncio.timeout(10):
        while not responses.chunks:
            responses._parser.feed_data(await responses.reader.read(65536))
    assert not responses.done  # the first event came before the backend finished
    stand_in.release.set()
    got = await responses.read(1)
    status, headers, body = got[0]
    assert status == 200
    assert headers[b"transfer-encoding"] == b"chunked"
    assert body.count(b"data:") == 3
    writer.close()


async def test_client_going_away_cancels_the_backend_call(
    front: tuple[RunningWorker, ScriptedBackend],
) -> None:
    running, stand_in = front
    writer, _ = await connect(running)
    writer.write(post("/hold", envelope(cost=5)))
    await wait_until(lambda: bool(stand_in.arrivals))
    writer.close()
    await wait_until(lambda: bool(stand_in.cancelled) and not running.worker.books.working)
    assert running.worker.admission.running == 0
    assert running.worker.admission.workload_ahead == 0
    assert served(running.worker, "499", "cancelled") == 1


def test_message_end_finds_where_each_request_ends() -> None:
    one = post("/a", b"12345")
    two = post("/bb", b"x")
    raw = one + two + b"GET / HTTP/1.1\r\n"
    assert message_end(raw, 1) == len(one)
    assert message_end(raw, 2) == len(one) + len(two)


async def test_idle_kept_alive_connection_is_closed(
    front: tuple[RunningWorker, ScriptedBackend],
) -> None:
    """A client that keeps a connection open and sends nothing loses it (aiohttp's rule)."""
    running, _ = front
    served = running.served.front
    assert served is not None
    writer, responses = await connect(running)
    writer.write(post("/echo", envelope({"a": 1})))
    assert [r[0] for r in await responses.read(1)] == [200]
    assert served.close_idle(time.monotonic()) == 0  # just used: kept
    assert served.close_idle(time.monotonic() + served.state.limits.idle_timeout_s + 1) == 1
    assert await asyncio.wait_for(responses.reader.read(), 10) == b""  # closed by the worker
    writer.close()
