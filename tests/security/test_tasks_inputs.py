"""Finding 12, the task server's part: malformed inputs get a JSON 4xx, never a 500, and a
``"stream": false`` task cannot make the worker hold an unbounded answer.

The task server listens on 127.0.0.1 behind the worker; these tests talk to it
directly (its own inputs) and through the worker (the answer cap), on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.tasks import conftest as task_fixtures
from tests.tasks.conftest import MakeTaskWorker, TaskWorker, program
from tests.tasks.test_tasks_http import gone

blockbuster = task_fixtures.blockbuster
no_leaked_tasks = task_fixtures.no_leaked_tasks
make_worker = task_fixtures.make_worker
http = task_fixtures.http
task_worker = task_fixtures.task_worker


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


BAD_BODIES = [
    pytest.param(b'{"x": ' + nested(300) + b"}", "too deep", id="payload-300-deep"),
    pytest.param(b'{"metadata": {"x": ' + nested(300) + b"}}", "too deep", id="metadata-300-deep"),
    pytest.param(b'{"x": ' + nested(2000) + b"}", "JSON", id="payload-2000-deep"),
    pytest.param(b'{"prompt": "\xff\xfe"}', "JSON", id="not-utf8"),
    pytest.param(b'{"prompt": "\xc0\xaf"}', "JSON", id="overlong-utf8"),
    pytest.param(b'{"prompt": "\\ud800"}', "JSON", id="lone-surrogate"),
    pytest.param(b"\xef\xbb\xbf{}", "JSON", id="byte-order-mark"),
    pytest.param(b'{"prompt": NaN}', "JSON", id="nan"),
    pytest.param(b"", "JSON", id="empty"),
    pytest.param(b"[1, 2]", "not an object", id="array"),
    pytest.param(b'{"stream": "no"}', None, id="stream-not-bool"),
    pytest.param(b'{"metadata": [1]}', "not an object", id="metadata-array"),
    pytest.param(b'{"metadata": {"x": "' + b"y" * 20000 + b'"}}', "too large", id="metadata-big"),
]


async def task_server(task_worker: MakeTaskWorker) -> tuple[TaskWorker, str]:
    worker = await task_worker({"text": {"command": program("text-worker/worker.py")}})
    served = worker.running.served.tasks
    assert served is not None
    return worker, served.url


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
async def test_a_malformed_input_gets_a_json_4xx(
    task_worker: MakeTaskWorker, body: bytes, field: str | None
) -> None:
    worker, url = await task_server(task_worker)
    async with worker.http.post(f"{url}/tasks/text", data=body) as resp:
        assert resp.status == 422, await resp.text()
        answer = await resp.json()
    assert answer["code"] == "invalid_request"
    if field is not None:
        assert field in str(answer["fields"].values())
    assert worker.runner.pool.free == ["0"]  # refused before it took a GPU


async def test_a_body_that_does_not_decode_as_its_content_encoding_says_is_a_400(
    task_worker: MakeTaskWorker,
) -> None:
    """Regression: a ``Content-Encoding: gzip`` body that is not gzip gave a 500."""
    worker, url = await task_server(task_worker)
    headers = {"Content-Encoding": "gzip"}
    async with worker.http.post(f"{url}/tasks/text", data=b"not gzip", headers=headers) as resp:
        assert resp.status == 400, await resp.text()
        assert "malformed" in (await resp.json())["error"]
    assert worker.runner.pool.free == ["0"]


@pytest.mark.parametrize(
    "request_head",
    [
        pytest.param(b"POST /tasks/%ff%fe HTTP/1.1\r\n", id="path-escapes-not-utf8"),
        pytest.param(b"POST /tasks/text HTTP/1.1\r\nX-Vespid-Auth: \xff\xfe\r\n", id="header"),
        pytest.param(b"POST /tasks/text?%ff=%fe HTTP/1.1\r\n", id="query-escapes-not-utf8"),
    ],
)
async def test_bytes_that_are_not_utf8_in_the_head_get_json(
    task_worker: MakeTaskWorker, request_head: bytes
) -> None:
    _, url = await task_server(task_worker)
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    body = b'{"prompt": "x", "stream": false}'
    writer.write(
        request_head
        + b"Host: x\r\nConnection: close\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, content = answer.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    assert status in (200, 404), head
    assert b"application/json" in head.lower(), head
    assert isinstance(orjson.loads(content), dict)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)
BODIES = st.one_of(
    st.binary(max_size=300),
    JSON_VALUES.map(orjson.dumps),
    st.dictionaries(st.sampled_from(["stream", "metadata", "prompt"]), JSON_VALUES).map(
        orjson.dumps
    ),
)


async def test_every_body_gets_a_json_4xx(
    task_worker: MakeTaskWorker,
) -> None:
    worker, url = await task_server(task_worker)
    loop = asyncio.get_running_loop()

    async def post(body: bytes) -> tuple[int, Any]:
        # An unknown model: a body that parses is refused with 404 and no program runs.
        async with worker.http.post(f"{url}/tasks/nope", data=body) as resp:
            return resp.status, await resp.json()

    @settings(max_examples=80, deadline=None, database=None)
    @given(body=BODIES)
    def check(body: bytes) -> None:
        status, answer = asyncio.run_coroutine_threadsafe(post(body), loop).result(10)
        assert status in (404, 422), (body, status, answer)
        assert isinstance(answer["error"], str)
        assert answer["code"]

    await asyncio.to_thread(check)


async def test_a_task_not_streamed_stops_at_the_answer_limit(
    task_worker: MakeTaskWorker, tmp_path: Path
) -> None:
    pid_file = tmp_path / "flood.pid"
    worker = await task_worker(
        {"flood": {"command": program("flood"), "env_vars": {"PID_FILE": str(pid_file)}}},
        VESPID_TASK_ANSWER_MAX_BYTES="65536",
        VESPID_TASK_STOP_GRACE_S="1",
    )
    status, body = await worker.post("flood", {"stream": False})
    assert status == 507
    assert body["code"] == "answer_too_large"
    assert (body["limit_bytes"], body["setting"]) == (65536, "VESPID_TASK_ANSWER_MAX_BYTES")
    assert "VESPID_TASK_ANSWER_MAX_BYTES" in body["error"]
    assert '"stream": true' in body["error"]
    pid = int(await asyncio.to_thread(pid_file.read_text))
    assert gone(pid)  # stopped before the answer
    assert worker.runner.pool.free == ["0"]
    metrics = worker.runner.metrics.render().decode()
    assert 'reason="answer_too_large"' in metrics
