"""A stand-in model server for the proxy benchmark: as cheap as an HTTP server gets.

Raw asyncio (on uvloop when installed) with a deliberately small HTTP/1.1 parser,
so that the backend's own CPU cost stays far below any proxy's and the numbers the
benchmark reports are about the proxy in front of it.

Routes:

* ``POST /tiny``   -> 200, a small JSON body with a Content-Length.
* ``POST /stream`` -> 200, ``text/event-stream``, chunked: the first event is written
  at once (in the same write as the headers), then one event every
  ``--interval-ms`` until ``--events`` have been sent, then ``data: [DONE]``.
* ``GET /health``  -> 200.

Anything else gets 404. Request bodies must carry a Content-Length (chunked request
bodies get 501 and the connection is closed); keep-alive is the default.

Usage: ``python bench/backend.py --port PORT [--events 4] [--interval-ms 20]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import Final, cast

TINY_BODY: Final = b'{"id":"bench","object":"text_completion","choices":[{"text":"ok"}]}'
HEALTH_BODY: Final = b'{"status":"ok"}'
MAX_HEAD_BYTES: Final = 64 * 1024


def _response(status: str, content_type: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 "
        + status.encode()
        + b"\r\nContent-Type: "
        + content_type
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


TINY_RESPONSE: Final = _response("200 OK", b"application/json", TINY_BODY)
HEALTH_RESPONSE: Final = _response("200 OK", b"application/json", HEALTH_BODY)
NOT_FOUND: Final = _response("404 Not Found", b"application/json", b'{"error":"not found"}')
BAD_REQUEST: Final = _response("400 Bad Request", b"application/json", b'{"error":"bad request"}')
NOT_IMPLEMENTED: Final = _response(
    "501 Not Implemented", b"application/json", b'{"error":"chunked request bodies"}'
)
STREAM_HEAD: Final = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
)


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _event(i: int) -> bytes:
    return _chunk(b'data: {"i":' + str(i).encode() + b',"text":"tok"}\n\n')


LAST_CHUNK: Final = _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"


class BenchHTTP(asyncio.Protocol):
    """One connection: parse requests in order, answer each before reading the next."""

    def __init__(self, events: int, interval_s: float) -> None:
        self._events = events
        self._interval_s = interval_s
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._streaming: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._streaming is not None:
            self._streaming.cancel()

    def data_received(self, data: bytes) -> None:
        self._buf += data
        self._serve_buffered()

    def _close(self, answer: bytes) -> None:
        if self._transport is not None:
            self._transport.write(answer)
            self._transport.close()

    def _serve_buffered(self) -> None:
        """Answer every complete request in the buffer (stop while a stream is running)."""
        while self._streaming is None and self._transport is not None:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_HEAD_BYTES:
                    self._close(BAD_REQUEST)
                return
            lines = bytes(self._buf[:end]).split(b"\r\n")
            parts = lines[0].split(b" ")
            if len(parts) != 3:
                self._close(BAD_REQUEST)
                return
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    try:
                        length = int(value.strip())
                    except ValueError:
                        self._close(BAD_REQUEST)
                        return
                elif name == b"transfer-encoding":
                    self._close(NOT_IMPLEMENTED)
                    return
            total = end + 4 + length
            if len(self._buf) < total:
                return
            del self._buf[:total]
            self._answer(parts[0], parts[1].split(b"?", 1)[0])

    def _answer(self, method: bytes, path: bytes) -> None:
        assert self._transport is not None
        if method == b"POST" and path == b"/tiny":
            self._transport.write(TINY_RESPONSE)
        elif method == b"POST" and path == b"/stream":
            # Headers and the first event leave in one write, right now.
            self._transport.write(STREAM_HEAD + _event(0))
            self._streaming = asyncio.get_running_loop().create_task(self._stream_rest())
        elif method == b"GET" and path == b"/health":
            self._transport.write(HEALTH_RESPONSE)
        else:
            self._transport.write(NOT_FOUND)

    async def _stream_rest(self) -> None:
        try:
            for i in range(1, self._events):
                await asyncio.sleep(self._interval_s)
                if self._transport is None:
                    return
                self._transport.write(_event(i))
            if self._transport is not None:
                self._transport.write(LAST_CHUNK)
        finally:
            self._streaming = None
        self._serve_buffered()  # a request that arrived while streaming (pipelining)


async def serve(host: str, port: int, events: int, interval_s: float) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = await loop.create_server(
        lambda: BenchHTTP(events, interval_s), host, port, reuse_address=True, backlog=1024
    )
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--events", type=int, default=4, help="SSE data events per /stream")
    parser.add_argument("--interval-ms", type=float, default=20.0, help="gap between events")
    args = parser.parse_args()
    if args.events < 1:
        parser.error("--events must be at least 1")
    coro = serve(args.host, args.port, args.events, args.interval_ms / 1000.0)
    with contextlib.suppress(KeyboardInterrupt):
        try:
            import uvloop
        except ImportError:
            asyncio.run(coro)
        else:
            uvloop.run(coro)


if __name__ == "__main__":
    main()
