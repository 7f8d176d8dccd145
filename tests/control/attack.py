"""What the security tests of the control plane attack with: raw HTTP on a socket (for
bytes aiohttp's client would not send), and an endpoint of null workers."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import orjson

__all__ = ["NULL_ENDPOINT", "RawAnswer", "host_port", "raw_exchange", "read_answer"]

# An endpoint of null workers (no model server): a worker is ready in about a second.
NULL_ENDPOINT: dict[str, Any] = {
    "scaling": {"max_workers": 1, "target_util": 1.0, "max_queue_time": 0},
    "template": {"env": {"VESPID_LOG_LEVEL": "warning"}, "ready_timeout": 60},
}


class RawAnswer:
    """A status, the headers (lower-cased names) and the body of one HTTP answer."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        assert self.headers.get("content-type", "").startswith("application/json"), self.headers
        return orjson.loads(self.body)


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


async def read_answer(reader: asyncio.StreamReader) -> RawAnswer:
    """One answer with a Content-Length (what every vespid error has)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return RawAnswer(int(status_line.split()[1]), headers, body)


async def raw_exchange(url: str, data: bytes, timeout_s: float = 10) -> RawAnswer:
    """Send ``data`` on a new connection and read one answer."""
    host, port = host_port(url)
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(data)
            await writer.drain()
            return await read_answer(reader)
        finally:
            writer.close()
            await writer.wait_closed()
