"""One request from the command line: ``vespid call``'s work, as a library function.

The answer is written out as it arrives: JSON pretty-printed, text as is, binary
bytes unchanged; with ``stream=True`` an SSE answer is printed event by event
(for OpenAI completions, just the text pieces) and anything else chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import aclosing
from typing import Any

import orjson

from vespid.client.client import Client
from vespid.client.endpoint import Endpoint
from vespid.client.errors import ClientError, ControlPlaneError
from vespid.client.response import Response
from vespid.client.sse import completion_text
from vespid.errors import ConfigError, VespidError

__all__ = ["call", "error_line", "render_body", "write_stream"]

Write = Callable[[bytes], None]


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
) -> None:
    """Look the endpoint up, send one request, write the answer with ``write``."""
    async with Client(url, api_key, timeout_s=timeout_s) as client:
        target = await _find(client, endpoint)
        async with await target.request(path, payload, cost=cost, stream=stream) as resp:
            if stream:
                await write_stream(resp, write)
            else:
                write(render_body(await resp.read(), resp.content_type))


async def _find(client: Client, name: str) -> Endpoint:
    """The endpoint from the listing; if the listing refuses the key, the key is taken
    to be the endpoint's own and the router checks it."""
    try:
        return await client.get_endpoint(name)
    except ControlPlaneError as exc:
        if exc.status not in (401, 403):
            raise
    return client.endpoint(name)


async def write_stream(resp: Response, write: Write) -> None:
    """Write a streamed answer as it arrives."""
    if resp.content_type != "text/event-stream":
        async for chunk in resp.iter_chunks():
            write(chunk)
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


def render_body(body: bytes, content_type: str) -> bytes:
    """A whole answer for a terminal: JSON indented, text ending in a newline, bytes as is."""
    if "json" in content_type:
        try:
            return orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2) + b"\n"
        except orjson.JSONDecodeError:
            pass
    if content_type.startswith("text/") or "json" in content_type:
        return body if body.endswith(b"\n") else body + b"\n"
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
