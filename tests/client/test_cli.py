"""``vespid call`` as a real subprocess against the router stand-in and real workers."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import orjson

from tests.client.conftest import Stack
from tests.worker.conftest import MakeWorker

ROOT = Path(__file__).resolve().parent.parent.parent
ENTRY = "from vespid.cli.main import main; main()"


async def start_cli(stack: Stack, *args: str) -> asyncio.subprocess.Process:
    """``vespid call ARGS`` with the stand-in's URL in the environment and the key as a flag."""
    env = {**os.environ, "VESPID_URL": stack.url}
    env.pop("VESPID_API_KEY", None)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", ENTRY, "call", *args, "--api-key", stack.router.account_key,
        cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def finish(proc: asyncio.subprocess.Process) -> tuple[int, bytes, bytes]:
    async with asyncio.timeout(20):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out, err


async def test_call_prints_a_json_answer(stack: Stack) -> None:
    proc = await start_cli(stack, "llm", "/echo", '{"prompt": "hi"}', "--cost", "12")
    code, out, err = await finish(proc)
    assert code == 0, err
    assert orjson.loads(orjson.loads(out)["body"]) == {"prompt": "hi"}
    assert stack.router.route_bodies[0]["cost"] == 12


async def test_call_stream_prints_events_as_they_arrive(stack: Stack) -> None:
    proc = await start_cli(stack, "llm", "/stream", "{}", "--stream")
    assert proc.stdout is not None
    async with asyncio.timeout(20):
        first = await proc.stdout.readline()
    # Printed while the backend still holds the rest of the stream back.
    assert first == b'{"n": 1}\n'
    stack.backend.release.set()
    code, rest, err = await finish(proc)
    assert (code, rest) == (0, b'{"n": 2}\n'), err


async def test_call_stream_prints_completion_text_pieces(
    stack: Stack, make_worker: MakeWorker, llama_url: str
) -> None:
    llama = await make_worker(
        BACKEND_URL=llama_url, REPORT_ADDR=stack.scaler_url, HEALTHCHECK_ENDPOINT="/health"
    )
    stack.router.workers = [llama.url]
    payload = {"prompt": "hello", "max_tokens": 8, "temperature": 0}
    async with stack.client() as client:
        endpoint = await client.get_endpoint("llm")
        whole = await (await endpoint.request("/v1/completions", payload)).json()
        expected = whole["choices"][0]["text"]
        assert expected
        stream_payload = {**payload, "stream": True}
        async with await endpoint.request("/v1/completions", stream_payload, stream=True) as resp:
            assert "".join([piece async for piece in resp.iter_text()]) == expected
    streamed = orjson.dumps(stream_payload).decode()
    proc = await start_cli(stack, "llm", "/v1/completions", streamed, "--stream")
    code, out, err = await finish(proc)
    assert code == 0, err
    assert out.decode() == expected + "\n"


async def test_call_errors_are_one_json_line_and_exit_1(stack: Stack) -> None:
    proc = await start_cli(stack, "nope", "/echo", "{}")
    code, out, err = await finish(proc)
    assert (code, out) == (1, b"")
    [line] = err.decode().splitlines()
    error = orjson.loads(line)
    assert (error["code"], error["name"]) == ("endpoint_not_found", "nope")
    assert "no endpoint named 'nope'" in error["error"]

    proc = await start_cli(stack, "llm", "/status/422", "{}")
    code, _, err = await finish(proc)
    [line] = err.decode().splitlines()
    error = orjson.loads(line)
    assert (code, error["code"], error["status"]) == (1, "worker_error", 422)
    assert error["body"] == {"error": "status 422"}


async def test_call_refuses_an_invalid_json_argument(stack: Stack) -> None:
    proc = await start_cli(stack, "llm", "/echo", "{oops")
    code, _, err = await finish(proc)
    assert code == 2
    assert "Invalid value for 'JSON': not valid JSON" in err.decode()
    assert not stack.router.calls


async def test_call_stream_asks_openai_for_a_stream_and_prints_its_text(
    stack: Stack, make_worker: MakeWorker, llama_url: str
) -> None:
    """The README's command, whose payload has no "stream" key: --stream adds it, the text
    prints as it arrives and ends with a newline; the cost is the payload's max_tokens."""
    llama = await make_worker(
        BACKEND_URL=llama_url, REPORT_ADDR=stack.scaler_url, HEALTHCHECK_ENDPOINT="/health"
    )
    proxy, proxy_url, _ = await stack.proxy(llama)
    stack.router.workers = [proxy_url]
    payload = {"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0}
    async with stack.client() as client:
        endpoint = await client.get_endpoint("llm")
        whole = await (await endpoint.request("/v1/completions", payload)).json()
    expected = whole["choices"][0]["text"]
    assert expected

    proc = await start_cli(stack, "llm", "/v1/completions", orjson.dumps(payload).decode(),
                           "--stream")  # fmt: skip
    code, out, err = await finish(proc)
    assert code == 0, err
    assert out.decode() == expected + "\n"
    assert proxy.seen[-1].body["payload"] == {**payload, "stream": True}
    assert stack.router.route_bodies[-1]["cost"] == 8


async def test_call_prints_a_completion_as_text_and_raw_json_with_raw(
    stack: Stack, make_worker: MakeWorker, llama_url: str
) -> None:
    llama = await make_worker(
        BACKEND_URL=llama_url, REPORT_ADDR=stack.scaler_url, HEALTHCHECK_ENDPOINT="/health"
    )
    stack.router.workers = [llama.url]
    payload = orjson.dumps({"prompt": "hello", "max_tokens": 6, "temperature": 0}).decode()

    code, raw, err = await finish(await start_cli(stack, "llm", "/v1/completions", payload,
                                                  "--raw", "--cost", "3"))  # fmt: skip
    assert code == 0, err
    assert raw.endswith(b"\n")
    answer = orjson.loads(raw)
    assert answer["object"] == "text_completion"
    assert stack.router.route_bodies[-1]["cost"] == 3  # --cost still wins

    code, text, err = await finish(await start_cli(stack, "llm", "/v1/completions", payload))
    assert code == 0, err
    assert text.decode() == answer["choices"][0]["text"] + "\n"
    assert stack.router.route_bodies[-1]["cost"] == 6
