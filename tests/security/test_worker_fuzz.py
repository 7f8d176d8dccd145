"""Property test of every route the worker parses, on each of its ports (the lean front,
aiohttp's routes, the /session/end port, the null worker's routes and control port):
whatever the method, path, query, headers and body, the answer comes (each request has
a client timeout) and is not a 5xx (the backend stand-in answers 200), and the worker
keeps serving afterwards. Bounded: a few hundred examples, well under a minute."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httptools
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.servers import ScriptedBackend, start_app
from tests.support.waiting import wait_until
from vespid.worker.lifecycle import WorkerState
from vespid.worker.serve import ServedWorker, running_worker
from vespid.worker.settings import load_worker_settings

FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TIMEOUT_S = 10.0
KEY = base64.b64encode(b"k" * 32).decode()


class Workers:
    """A signed worker before the stand-in backend and an unsecured null worker, served on
    their own event loop in a thread, so hypothesis drives them with plain sockets."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.loop = asyncio.new_event_loop()
        self.ports: dict[str, int] = {}
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self.loop.run_until_complete, args=(self._run(),))

    def __enter__(self) -> Workers:
        self._thread.start()
        assert self._ready.wait(60), "the workers did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        self.loop.close()

    async def _run(self) -> None:
        self._stop = asyncio.Event()
        common = {"WORKER_PORT": "0", "VESPID_HOST": "127.0.0.1", "VESPID_LOG_LEVEL": "error",
                  "VESPID_CACHE_DIR": str(self.cache), "VESPID_HEADER_TIMEOUT_S": "2",
                  "VESPID_BODY_TIMEOUT_S": "2", "WORKER_HTTP_PORT": "0"}  # fmt: skip
        async with AsyncExitStack() as stack:
            backend = await stack.enter_async_context(start_app(ScriptedBackend().app()))
            signed = load_worker_settings(
                {**common, "BACKEND_URL": backend, "VESPID_REQUEST_KEY": KEY,
                 "VESPID_MAX_PERF": "1000", "MASTER_TOKEN": "t", "MAX_SESSIONS": "1000"}
            )  # fmt: skip
            null = load_worker_settings(
                {**common, "BACKEND": "null", "UNSECURED": "true", "NULL_CONTROL_PORT": "0",
                 "MAX_SESSIONS": "1000"}
            )  # fmt: skip
            a: ServedWorker = await stack.enter_async_context(running_worker(signed))
            b: ServedWorker = await stack.enter_async_context(running_worker(null))
            await wait_until(lambda: _ready(a) and _ready(b), 30)
            assert b.control_port is not None
            self.ports = {"front": a.port, "session-end": a.http_port, "null": b.port,
                          "null-control": b.control_port}  # fmt: skip
            self._ready.set()
            await self._stop.wait()


def _ready(served: ServedWorker) -> bool:
    return served.worker.lifecycle.state is WorkerState.READY


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    with Workers(tmp_path_factory.mktemp("fuzz")) as running:
        yield running


class _Answer:
    def __init__(self) -> None:
        self.done = False
        self.parser = httptools.HttpResponseParser(self)

    def on_message_complete(self) -> None:
        self.done = True


def ask(port: int, request: bytes) -> int | None:
    """Send one request; the status of its answer, or None if the worker closed the
    connection without one. Fails on a client timeout (a hang)."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as sock:
        with contextlib.suppress(OSError):  # refused while sending: the answer may be there
            sock.sendall(request)
        answer = _Answer()
        while not answer.done:
            try:
                data = sock.recv(65536)
            except ConnectionError:
                return None
            if not data:
                return None
            answer.parser.feed_data(data)
        return int(answer.parser.get_status_code())


PATHS = ["/echo", "/session/create", "/session/get", "/session/health", "/session/end",
         "/pyworker/update", "/metrics", "/release", "/health", "/v1/x"]  # fmt: skip
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "BREW"]
token = st.text("abcdefghijklmnopqrstuvwxyz-_ABCXYZ0123456789", min_size=1, max_size=20)
header_value = st.binary(max_size=200).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=30,
)
auth_fields = st.fixed_dictionaries(
    {},
    optional={"cost": json_value, "endpoint": json_value, "reqnum": json_value,
              "request_idx": json_value, "signature": json_value, "url": json_value,
              "expires_at": json_value, "alg": st.sampled_from(["HS256", "x"]) | json_value},
)  # fmt: skip
envelope = st.fixed_dictionaries(
    {"auth_data": auth_fields | json_value},
    optional={"payload": json_value, "session_id": json_value, "session_auth": json_value,
              "lifetime": json_value},
)  # fmt: skip


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # integers beyond 64 bits
        return repr(value).encode()


deep_envelope = st.builds(
    lambda depth: b'{"auth_data":{},"payload":' + b"[" * depth + b"]" * depth + b"}",
    st.integers(200, 1100),
)
body = (
    deep_envelope
    | envelope.map(_dumps)
    | json_value.map(_dumps)
    | st.binary(max_size=300)
    | st.builds(lambda depth: b"[" * depth + b"]" * depth, st.integers(0, 1100))
)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    method = draw(st.just("POST") | st.sampled_from(METHODS) | token)
    path = draw(st.sampled_from(PATHS) | token.map(lambda t: "/" + t))
    query = draw(st.none() | st.text("abc=&%20xyz?", max_size=30))
    target = path + ("" if query is None else "?" + query)
    headers = draw(st.lists(st.tuples(token, header_value), max_size=8))
    if draw(st.integers(0, 3)) == 0:
        headers.append(("X-Vespid-Auth", _dumps(draw(auth_fields | json_value))))
    if draw(st.booleans()):
        headers.append(("Authorization", b"Bearer " + draw(header_value)))
    payload = draw(body)
    head = [f"{method} {target} HTTP/1.1".encode(), b"Host: w"]
    head += [name.encode() + b": " + value for name, value in headers
             if name.lower() not in ("content-length", "transfer-encoding", "host")]  # fmt: skip
    head.append(b"Content-Length: %d" % len(payload))
    head.append(b"Connection: close")
    return b"\r\n".join(head) + b"\r\n\r\n" + payload


@pytest.mark.parametrize("port_name", ["front", "session-end", "null", "null-control"])
def test_no_request_gets_a_5xx_or_hangs(workers: Workers, port_name: str) -> None:
    port = workers.ports[port_name]

    @FUZZ
    @given(requests())
    def one(request: bytes) -> None:
        status = ask(port, request)
        assert status is None or status < 500, (status, request[:300])

    one()
    # Still serving: a plain request is answered.
    assert ask(port, b"GET /metrics HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n") is not None


@FUZZ
@given(st.binary(min_size=1, max_size=400))
def test_garbage_bytes_are_answered_or_closed(workers: Workers, garbage: bytes) -> None:
    status = ask(workers.ports["front"], garbage + b"\r\n\r\n")
    assert status is None or status < 500, (status, garbage[:200])
