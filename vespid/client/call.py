"""One request from the command line: ``vespid call``'s work, as a library function.

The answer is written out as it arrives. An OpenAI completion or chat completion
(``/v1/completions``, ``/v1/chat/completions``) is printed as its text; other JSON
is pretty-printed, text as is, binary bytes unchanged. With ``stream=True`` an SSE
answer is printed event by event (for OpenAI streams, just the text pieces) and
anything else chunk by chunk. With ``raw=True`` the answer is copied as the worker
sent it. Text always ends with a newline.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import aclosing
from typing import Any, Final

import orjson

from vespid.client.client import Client
from vespid.client.endpoint import Endpoint
from vespid.client.errors import ClientError, ControlPlaneError
from vespid.client.response import Response
from vespid.client.sse import choice_texts, completion_text
from vespid.errors import ConfigError, VespidError

__all__ = [
    "OPENAI_PATHS",
    "answer_text",
    "call",
    "error_line",
    "is_openai_path",
    "render_answer",
    "render_body",
    "stream_payload",
    "write_stream",
]

Write = Callable[[bytes], None]

OPENAI_PATHS: Final = ("/v1/completions", "/v1/chat/completions")


async def call(
    *,
    url: str,
    api_key: str,
    endpoint: str,
    path: str,
    payload: Any,
    cost: float,
    stream: bool,
    timeout_s: float,
    write: Write,
    raw: bool = False,
) -> None:
    """Look the endpoint up, send one request, write the answer with ``write``."""
    async with Client(url, api_key, timeout_s=timeout_s) as client:
        target = await _find(client, endpoint)
        async with await target.request(path, payload, cost=cost, stream=stream) as resp:
            if stream:
                await write_stream(resp, write, raw=raw)
                return
            body = await resp.read()
            if raw:
                write(_ended(body, resp.content_type))
            else:
                write(render_answer(path, body, resp.content_type))


async def _find(client: Client, name: str) -> Endpoint:
    """The endpoint from the listing; if the listing refuses the key, the key is taken
    to be the endpoint's own and the router checks it."""
    try:
        return await client.get_endpoint(name)
    except ControlPlaneError as exc:
        if exc.status not in (401, 403):
            raise
    return client.endpoint(name)


def is_openai_path(path: str) -> bool:
    """Whether ``path`` is OpenAI's completions or chat completions route."""
    return path.partition("?")[0].rstrip("/") in OPENAI_PATHS


def stream_payload(path: str, payload: Any) -> Any:
    """``payload`` asking for a streamed answer: on an OpenAI path, a JSON object without
    a ``stream`` key gets ``"stream": true``; anything else is left as it is."""
    if is_openai_path(path) and isinstance(payload, dict) and "stream" not in payload:
        return {**payload, "stream": True}
    return payload


async def write_stream(resp: Response, write: Write, *, raw: bool = False) -> None:
    """Write a streamed answer as it arrives: an SSE answer event by event (OpenAI
    streams as their text), anything else (or everything, with ``raw``) as it comes."""
    if raw or resp.content_type != "text/event-stream":
        last = b"\n"
        async for chunk in resp.iter_chunks():
            if chunk:
                write(chunk)
                last = chunk[-1:]
        if last != b"\n" and _is_text(resp.content_type):
            write(b"\n")
        return
    wrote_text = False
    async with aclosing(resp.iter_events()) as events:
        async for event in events:
            if event.data == "[DONE]":
                break
            text = completion_text(event)
            if text is None:
                write(event.data.encode() + b"\n")
            elif text:
                write(text.encode())
                wrote_text = True
    if wrote_text:
        write(b"\n")


def answer_text(value: Any) -> str | None:
    """The text of an OpenAI completion (``choices[].text``) or chat completion
    (``choices[].message.content``), choices one a line; None for anything else."""
    texts = choice_texts(value, "message")
    return "\n".join(texts) if texts else None


def render_answer(path: str, body: bytes, content_type: str) -> bytes:
    """A whole answer for a terminal: on an OpenAI path, the completion's text; else as
    ``render_body`` does."""
    if is_openai_path(path) and "json" in content_type:
        try:
            text = answer_text(orjson.loads(body))
        except orjson.JSONDecodeError:
            text = None
        if text is not None:
            return _ended(text.encode(), content_type)
    return render_body(body, content_type)


def render_body(body: bytes, content_type: str) -> bytes:
    """A whole answer for a terminal: JSON indented, text ending in a newline, bytes as is."""
    if "json" in content_type:
        try:
            return orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2) + b"\n"
        except orjson.JSONDecodeError:
            pass
    return _ended(body, content_type)


def _is_text(content_type: str) -> bool:
    return content_type.startswith("text/") or "json" in content_type


def _ended(body: bytes, content_type: str) -> bytes:
    """Text (and JSON) ending in a newline; other bytes unchanged."""
    if _is_text(content_type) and not body.endswith(b"\n"):
        return body + b"\n"
    return body


def error_line(exc: VespidError) -> str:
    """An error as one line of JSON: ``{"error": message, "code": ..., ...}``."""
    if isinstance(exc, ClientError):
        body = exc.body()
    elif isinstance(exc, ConfigError):
        body = {"error": str(exc), "code": "config_error"}
    else:
        body = {"error": str(exc), "code": "error"}
    return orjson.dumps(body, default=str).decode()
