"""Raw HTTP/1.1 over a socket, for tests that send what no HTTP client would: one answer
read with httptools, or the connection seen to close without one."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import httptools
import orjson

__all__ = ["Reply", "exchange", "read_reply"]


@dataclass
class Reply:
    """One answer: its status, headers (lower-case names) and body."""

    status: int
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> object:
        return orjson.loads(self.body)


class _Reader:
    def __init__(self) -> None:
        self.reply: Reply | None = None
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self.parser = httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        self.reply = Reply(status, self._headers, b"".join(self._body))


async def read_reply(reader: asyncio.StreamReader, timeout_s: float = 10.0) -> Reply | None:
    """The next answer on a connection, or None when it closes without one."""
    state = _Reader()
    async with asyncio.timeout(timeout_s):
        while state.reply is None:
            data = await reader.read(65536)
            if not data:
                return None
            state.parser.feed_data(data)
    return state.reply


async def exchange(port: int, data: bytes, timeout_s: float = 10.0) -> Reply | None:
    """Send ``data`` on a fresh connection to 127.0.0.1:``port`` while reading its first
    answer (as a browser does: a refusal may come before everything is sent); None when
    the worker closes the connection without one."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def send() -> None:
        with contextlib.suppress(ConnectionError):
            for at in range(0, len(data), 65536):
                writer.write(data[at : at + 65536])
                await writer.drain()

    sending = asyncio.create_task(send())
    try:
        try:
            return await read_reply(reader, timeout_s)
        except ConnectionError:
            return None
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending
        writer.close()
