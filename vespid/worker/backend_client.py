"""A lean HTTP/1.1 client for the one backend a worker sits in front of.

A keep-alive connection pool on asyncio Protocols (uvloop or the stock loop), with
``httptools`` (llhttp) parsing the responses. It does only what the worker needs:

* requests are built here: method, target, ``Host``, the given headers and a
  ``Content-Length``; the body is sent in one piece, never chunked;
* a response is handed over once its headers are in; its body is then either read
  whole (``read``) or taken piece by piece as it arrives (``read_chunk``), with
  flow control: when the reader falls behind, reading from the backend pauses, so
  at most about ``HIGH_WATER`` bytes wait here;
* bodies framed by ``Content-Length``, chunked, or delimited by the backend closing
  the connection; ``HEAD`` and 1xx/204/304 answers carry none;
* a connection goes back to the pool only after a complete response that allows
  keep-alive; after any error, or if the caller stops early or is cancelled (the
  client went away), it is closed at once, so the backend sees the disconnect and
  can stop generating;
* ``limit`` bounds the connections open at once (``None``: no bound); callers beyond
  it wait in arrival order;
* timeouts: ``connect_timeout_s`` to open a connection, and ``read_timeout_s`` of
  silence from the backend while a response is awaited or read (not counted while
  reading is paused for a slow reader; checked every tenth of it, at most every
  second).

Failures raise ``BackendClientError`` subclasses; ``vespid.worker.proxy`` maps them
to vespid's HTTP errors.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections import deque
from collections.abc import Mapping
from typing import Final
from urllib.parse import unquote, urlsplit

from vespid.worker.backend_connection import (
    HIGH_WATER,
    MAX_HEAD_BYTES,
    WAIT_CHUNK,
    WAIT_HEADERS,
    WAIT_WHOLE,
    BackendClientError,
    BrokenBody,
    ClientClosed,
    ConnectFailed,
    Connection,
    ConnectTimeout,
    InvalidRequest,
    InvalidResponse,
    ReadTimeout,
    ServerDisconnected,
)

__all__ = [
    "HIGH_WATER",
    "MAX_HEAD_BYTES",
    "BackendClient",
    "BackendClientError",
    "BackendResponse",
    "BrokenBody",
    "ClientClosed",
    "ConnectFailed",
    "ConnectTimeout",
    "InvalidRequest",
    "InvalidResponse",
    "ReadTimeout",
    "ServerDisconnected",
]

KEEPALIVE_S: Final = 30.0  # an idle connection older than this is closed, not reused


class BackendResponse:
    """A response whose headers are in; read its body, then ``release`` it (always)."""

    __slots__ = ("_client", "_conn", "_released", "headers", "status")

    def __init__(self, client: BackendClient, conn: Connection) -> None:
        self._client = client
        self._conn = conn
        self._released = False
        self.status = conn.status
        self.headers = conn.headers  # raw (name, value) pairs, in the order received

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower case), or None."""
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    @property
    def content_length(self) -> int | None:
        value = self.header(b"content-length")
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            return None

    @property
    def content_type(self) -> str:
        """The media type, without parameters, lower case; '' when absent."""
        value = self.header(b"content-type")
        if value is None:
            return ""
        return value.split(b";", 1)[0].strip().lower().decode("latin-1")

    async def read(self) -> bytes:
        """The whole body; the connection goes back to the pool."""
        conn = self._conn
        try:
            while not conn.complete:
                if conn.error is not None:
                    raise conn.error
                await conn.wait(WAIT_WHOLE)
            return conn.take_chunks() if conn.chunks else b""
        finally:
            self.release()  # pooled if complete, else closed

    async def read_chunk(self) -> bytes:
        """What has arrived of the body since the last call, waiting for some; b'' at the end."""
        conn = self._conn
        conn.streaming = True
        while True:
            if conn.chunks:
                return conn.take_chunks()
            if conn.error is not None:
                raise conn.error
            if conn.complete:
                return b""
            try:
                await conn.wait(WAIT_CHUNK)
            except BaseException:  # cancelled: the caller is gone, so is the connection
                self.release()
                raise

    def release(self) -> None:
        """Give the connection back: to the pool after a complete answer, else closed."""
        if not self._released:
            self._released = True
            self._client._release(self._conn)


class BackendClient:
    """A keep-alive pool of connections to one backend base URL."""

    def __init__(
        self,
        base_url: str,
        *,
        limit: int | None = None,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 600.0,
        keepalive_s: float = KEEPALIVE_S,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the backend URL must be http(s)://host[:port] (got {base_url!r})")
        self.base_url = base_url
        self.limit = limit
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.keepalive_s = keepalive_s
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl: ssl.SSLContext | None = (
            ssl.create_default_context() if parts.scheme == "https" else None
        )
        self._prefix = parts.path.rstrip("/")
        host_header = parts.netloc.rsplit("@", 1)[-1]
        extra = f"Host: {host_header}\r\n"
        if parts.username is not None:
            user_pass = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            extra += f"Authorization: Basic {base64.b64encode(user_pass.encode()).decode()}\r\n"
        self._fixed_headers = extra
        self._loop: asyncio.AbstractEventLoop | None = None  # the running loop, from first use
        self._idle: list[Connection] = []
        self._all: set[Connection] = set()
        self._in_use = 0
        self._waiters: deque[asyncio.Future[Connection | None]] = deque()
        self._closed = False
        self._sweep: asyncio.TimerHandle | None = None

    @property
    def connections(self) -> int:
        """Connections open now, idle or busy."""
        return len(self._all)

    @property
    def idle_connections(self) -> int:
        return sum(1 for conn in self._idle if not conn.closed)

    async def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> BackendResponse:
        """Send one request; returns once the response headers are in.

        ``target`` is the path and query, appended to the base URL's path.
        """
        data = self._encode(method, target, headers, body)
        conn = await self._acquire()
        try:
            conn.send(data, head=method == "HEAD")
            while not conn.headers_done:
                if conn.error is not None:
                    raise conn.error
                await conn.wait(WAIT_HEADERS)
        except BaseException:
            self._release(conn)
            raise
        return BackendResponse(self, conn)

    async def close(self) -> None:
        """Close every connection; waiting callers get ClientClosed."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for conn in list(self._all):
            conn.fail(ClientClosed("the backend client was closed"))
        self._all.clear()
        self._idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ClientClosed("the backend client was closed"))
        await asyncio.sleep(0)  # let the transports finish closing

    # -- building the request ------------------------------------------------------

    def _encode(
        self, method: str, target: str, headers: Mapping[str, str] | None, body: bytes
    ) -> bytes:
        if not target.startswith("/"):
            target = "/" + target
        if _unsafe(method) or " " in method or _unsafe(target) or " " in target:
            raise InvalidRequest(f"cannot send {method!r} {target!r} to the backend")
        lines = [f"{method} {self._prefix}{target} HTTP/1.1\r\n{self._fixed_headers}"]
        if headers:
            for name, value in headers.items():
                if _unsafe(name) or _unsafe(value) or ":" in name:
                    raise InvalidRequest(f"cannot send header {name!r}: {value!r} to the backend")
                lines.append(f"{name}: {value}\r\n")
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        head = "".join(lines).encode("utf-8", "surrogateescape")
        return head + body if len(body) < 65536 else b"".join((head, body))

    # -- the pool ------------------------------------------------------------------

    async def _acquire(self) -> Connection:
        if self._closed:
            raise ClientClosed("the backend client is closed")
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        if self.limit is not None and (self._in_use >= self.limit or self._waiters):
            waiter: asyncio.Future[Connection | None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                handed = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._hand_on(waiter.result())  # we were given the slot: pass it on
                elif waiter in self._waiters:
                    self._waiters.remove(waiter)
                raise
            if handed is not None and not handed.closed:
                return handed
        else:
            self._in_use += 1
            idle = self._idle
            expired = loop.time() - self.keepalive_s
            while idle:
                conn = idle.pop()
                if conn.closed or conn.transport is None or conn.transport.is_closing():
                    continue
                if conn.idle_since < expired:
                    conn.abort()
                    continue
                return conn
        try:
            return await self._connect(loop)
        except BaseException:
            self._hand_on(None)
            raise

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> Connection:
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, conn = await loop.create_connection(
                    lambda: Connection(self, loop),
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._ssl is not None else None,
                )
        except TimeoutError:
            raise ConnectTimeout(
                f"connecting to {self._host}:{self._port} took longer than "
                f"{self.connect_timeout_s:g} s"
            ) from None
        except OSError as exc:
            raise ConnectFailed(
                f"cannot connect to {self._host}:{self._port}: {exc.strerror or exc}"
            ) from exc
        if self._closed:
            conn.abort()
            raise ClientClosed("the backend client was closed while connecting")
        self._all.add(conn)
        return conn

    def _release(self, conn: Connection) -> None:
        conn.finished()
        if conn.reusable and not self._closed:
            conn.idle_since = conn.loop.time()
            self._hand_on(conn)
        else:
            conn.abort()
            self._hand_on(None)

    def _hand_on(self, conn: Connection | None) -> None:
        """A slot is free (with ``conn`` to reuse, if any): give it to the next waiter."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._in_use -= 1
        if conn is not None:
            self._idle.append(conn)

    def forget(self, conn: Connection) -> None:
        self._all.discard(conn)

    # -- the read timeout ----------------------------------------------------------
    #
    # One timer per client, not per request: arming and cancelling a timer for each
    # response cost more than the rest of the response handling here. The sweep runs
    # only while some response is awaited, every tenth of the timeout (at most 1 s),
    # so a timeout fires between read_timeout_s and 1.1 x read_timeout_s of silence.

    def watch_reads(self) -> None:
        """A request went out: make sure the sweep is running."""
        if self._sweep is None and self._loop is not None:
            self._sweep = self._loop.call_later(self._sweep_interval_s, self._on_sweep)

    @property
    def _sweep_interval_s(self) -> float:
        return min(1.0, self.read_timeout_s / 10)

    def _on_sweep(self) -> None:
        self._sweep = None
        if self._loop is None or self._closed:
            return
        deadline = self._loop.time() - self.read_timeout_s
        watching = False
        for conn in list(self._all):
            if conn.awaiting_bytes:
                if conn.last_read <= deadline:
                    conn.timed_out(self.read_timeout_s)
                else:
                    watching = True
        if watching:
            self.watch_reads()


def _unsafe(text: str) -> bool:
    return "\r" in text or "\n" in text or "\0" in text
