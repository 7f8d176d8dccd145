"""One connection of the worker's backend client: an asyncio Protocol that sends a
request and parses its response with ``httptools`` (llhttp).

``BackendClient`` (``vespid.worker.backend_client``) owns the pool and hands requests to
these; a connection tells its owner when a read deadline should be watched and when it
is gone. The errors both raise are defined here.
"""

from __future__ import annotations

import asyncio
from typing import Final, Protocol, cast

import httptools

__all__ = [
    "HIGH_WATER",
    "MAX_HEAD_BYTES",
    "WAIT_CHUNK",
    "WAIT_HEADERS",
    "WAIT_WHOLE",
    "BackendClientError",
    "BrokenBody",
    "ClientClosed",
    "ConnectFailed",
    "ConnectTimeout",
    "Connection",
    "ConnectionOwner",
    "InvalidRequest",
    "InvalidResponse",
    "ReadTimeout",
    "ServerDisconnected",
    "is_delimited",
]

HIGH_WATER: Final = 64 * 1024  # bytes of a streamed body held before reading pauses
MAX_HEAD_BYTES: Final = 256 * 1024  # status line and headers (1xx included), at most

# What a waiting reader needs before it is woken.
WAIT_HEADERS: Final = 0
WAIT_WHOLE: Final = 1
WAIT_CHUNK: Final = 2


class BackendClientError(Exception):
    """The backend could not be reached or did not answer properly."""


class ConnectFailed(BackendClientError):
    """The connection could not be opened (refused, unreachable, TLS failure)."""


class ConnectTimeout(BackendClientError, TimeoutError):
    """Opening the connection took longer than the connect timeout."""


class ReadTimeout(BackendClientError, TimeoutError):
    """The backend stayed silent longer than the read timeout within a response."""


class ServerDisconnected(BackendClientError):
    """The backend closed or reset the connection before the response headers."""


class BrokenBody(BackendClientError):
    """The connection ended, or failed, in the middle of the response body."""


class InvalidResponse(BackendClientError):
    """The backend's bytes are not a valid HTTP/1.1 response."""


class InvalidRequest(BackendClientError):
    """The request cannot be sent as given (a control character in a header or target)."""


class ClientClosed(BackendClientError):
    """The client was closed while the request waited."""


class ConnectionOwner(Protocol):
    """What a connection needs of the pool that opened it."""

    def watch_reads(self) -> None:
        """A response is due: make sure read timeouts are being checked."""

    def forget(self, conn: Connection) -> None:
        """``conn`` is closed: drop it from the pool."""


class Connection(asyncio.Protocol):
    """One connection to the backend; at most one request in flight on it."""

    def __init__(self, owner: ConnectionOwner, loop: asyncio.AbstractEventLoop) -> None:
        self._owner = owner
        self.loop = loop
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._paused = False
        self.last_read = 0.0  # loop time of the request, or of the last bytes since
        self._waiter: asyncio.Future[None] | None = None
        self._wait_for = WAIT_HEADERS
        self.streaming = False  # the body is being taken piece by piece: flow control on
        self._busy = False
        self._head = False
        self._interim = False
        self._renew_parser = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.garbage = False  # bytes beyond the response: never reuse
        self.error: BackendClientError | None = None
        self.chunks: list[bytes] = []
        self.buffered = 0
        self._head_bytes = 0  # bytes received while the headers were not complete

    # -- driving one request -------------------------------------------------

    def send(self, data: bytes, *, head: bool) -> None:
        """Start a request: reset the response state and write ``data``."""
        self._busy = True
        self._head = head
        self.streaming = False
        self._interim = False
        self.status = 0
        self.headers = []
        self.headers_done = self.complete = self.keep_alive = False
        self.chunks = []
        self.buffered = 0
        self._head_bytes = 0
        assert self.transport is not None
        self.transport.write(data)
        self.last_read = self.loop.time()
        self._owner.watch_reads()

    async def wait(self, what: int) -> None:
        """Sleep until the condition ``what`` may hold, or an error."""
        self._wait_for = what
        waiter = self._waiter = self.loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def take_chunks(self) -> bytes:
        chunks = self.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks = []
        self.buffered = 0
        if self._paused and not self.closed:
            self._paused = False
            assert self.transport is not None
            self.transport.resume_reading()
            self.last_read = self.loop.time()
            self._owner.watch_reads()
        return data

    def finished(self) -> None:
        """The response is over for the caller; no more reads will come."""
        self._busy = False

    @property
    def reusable(self) -> bool:
        return (
            self.complete
            and self.keep_alive
            and not self.garbage
            and self.error is None
            and not self.closed
            and not self._paused
        )

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.abort()

    def fail(self, error: BackendClientError) -> None:
        if self.error is None:
            self.error = error
        self.abort()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        what = self._wait_for
        if (
            self.error is not None
            or self.closed
            or (what == WAIT_HEADERS and self.headers_done)
            or (what == WAIT_WHOLE and self.complete)
            or (what == WAIT_CHUNK and (self.chunks or self.complete))
        ):
            waiter.set_result(None)

    # -- the read timeout (checked by the client's sweep) ----------------------

    @property
    def awaiting_bytes(self) -> bool:
        """Whether silence from the backend counts now: a response is due and being read."""
        return self._busy and not self.complete and not self._paused and not self.closed

    def timed_out(self, read_timeout_s: float) -> None:
        what = "a response body" if self.headers_done else "the response"
        self.fail(ReadTimeout(f"no data from the backend for {read_timeout_s:g} s in {what}"))

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if not self._busy:  # nothing was asked: the connection is out of step
            self.garbage = True
            self.abort()
            return
        self.last_read = self.loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.fail(InvalidResponse("the backend switched protocols, which was not asked for"))
            return
        except httptools.HttpParserError as exc:
            self.fail(InvalidResponse(f"the backend's response is not valid HTTP/1.1: {exc}"))
            return
        if self._renew_parser:  # llhttp cannot be told that a HEAD answer has no body
            self._renew_parser = False
            self._parser = httptools.HttpResponseParser(self)
        if not self.headers_done:  # all of these bytes were status line and headers
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self.fail(InvalidResponse(f"response headers beyond {MAX_HEAD_BYTES} bytes"))
                return
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._owner.forget(self)
        if self._busy and not self.complete and self.error is None:
            reason = f": {exc}" if exc is not None else ""
            if not self.headers_done:
                self.error = ServerDisconnected(
                    f"the backend closed the connection before answering{reason}"
                )
            elif exc is None and not is_delimited(self.headers):
                self.complete = True  # the body ran until the backend closed: it is whole
            else:
                self.error = BrokenBody(
                    f"the backend closed the connection in the middle of the body{reason}"
                )
        self._wake()

    # -- httptools callbacks ---------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            self.garbage = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.complete:
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        status = self._parser.get_status_code()
        if status < 200:  # 100 Continue, 103 Early Hints: the real answer follows
            self._interim = True
            self.headers = []
            return
        self.status = status
        self.headers_done = True
        if self._head:
            self.complete = True
            self.keep_alive = self._parser.should_keep_alive()
            self._renew_parser = True

    def on_body(self, body: bytes) -> None:
        if self.complete:  # a body on a HEAD answer
            self.garbage = True
            return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and self.streaming and not self._paused:
            self._paused = True
            assert self.transport is not None
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self.complete:
            return
        self.complete = True
        self.keep_alive = self._parser.should_keep_alive()


def is_delimited(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the body has its own framing (Content-Length or chunked)."""
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-length":
            return True
        if lowered == b"transfer-encoding" and value.rsplit(b",", 1)[-1].strip().lower() == (
            b"chunked"
        ):
            return True
    return False
