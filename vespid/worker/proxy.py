"""Forwarding to the model server: one pooled HTTP client, streaming relay, error mapping.

The client is ``vespid.worker.backend_client``: a keep-alive pool of HTTP/1.1
connections to the backend. Non-streamed answers (with a Content-Length) are read
whole and sent on; anything else (SSE, NDJSON, chunked) is relayed chunk by chunk as
it arrives, and reading from the backend pauses while the client is slow to take
it. The status, content type and body reach the client unchanged; only hop-by-hop
headers are dropped. The mapping from the HTTP client's exceptions to vespid's
errors lives in ``map_backend_errors`` and nowhere else.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Final

import aiohttp
from aiohttp import web

from vespid.errors import BackendError, BackendTimeout, BackendUnavailable
from vespid.web import relay_headers
from vespid.worker.backend_client import (
    BackendClient,
    BackendClientError,
    BackendResponse,
    BrokenBody,
    ClientClosed,
    ConnectFailed,
    ConnectTimeout,
    InvalidRequest,
    InvalidResponse,
    ReadTimeout,
    ServerDisconnected,
)

__all__ = [
    "AIOHTTP_ERRORS",
    "BACKEND_ERRORS",
    "PREPARED_KEY",
    "SSE_BROKEN",
    "BackendProxy",
    "RelayResult",
    "Respond",
    "backend_error_for",
    "map_backend_errors",
]

log = logging.getLogger("vespid.worker")

CONNECT_TIMEOUT_S: Final = 10.0

# What an SSE client gets, in-band, when the backend's stream breaks after the headers.
SSE_BROKEN: Final = (
    b'event: error\ndata: {"error": "backend stream broke", "code": "backend_error"}\n\n'
)

# Most specific first: the first entry that matches decides.
BACKEND_ERRORS: Final[tuple[tuple[type[BaseException], type[BackendError], str], ...]] = (
    (ConnectTimeout, BackendTimeout, "connecting to the backend timed out"),
    (ReadTimeout, BackendTimeout, "backend did not answer in time"),
    (TimeoutError, BackendTimeout, "backend did not answer in time"),
    (ConnectFailed, BackendUnavailable, "backend refused the connection"),
    (ServerDisconnected, BackendUnavailable, "backend closed the connection"),
    (BrokenBody, BackendError, "backend sent a broken body"),
    (InvalidResponse, BackendError, "backend sent an invalid response"),
    (InvalidRequest, BackendError, "the request cannot be sent to the backend"),
    (ClientClosed, BackendUnavailable, "the worker is shutting down"),
)


# Handlers that shape the answer themselves get an aiohttp response (the API PyWorker-style
# code expects); its exceptions map here.
AIOHTTP_ERRORS: Final[tuple[tuple[type[BaseException], type[BackendError], str], ...]] = (
    (aiohttp.ServerTimeoutError, BackendTimeout, "backend did not answer in time"),
    (aiohttp.ClientConnectorError, BackendUnavailable, "backend refused the connection"),
    (aiohttp.ServerDisconnectedError, BackendUnavailable, "backend closed the connection"),
    (aiohttp.ClientConnectionError, BackendUnavailable, "connection to the backend failed"),
    (aiohttp.ClientPayloadError, BackendError, "backend sent a broken body"),
    (aiohttp.ClientError, BackendError, "backend request failed"),
)

# A handler's own responder marks here the answer it started (see Worker).
PREPARED_KEY: Final = web.RequestKey("vespid.prepared", web.StreamResponse)

Respond = Callable[[web.Request, aiohttp.ClientResponse], Awaitable[web.StreamResponse]]


def backend_error_for(exc: BaseException, url: str = "") -> BackendError:
    """The BackendError subclass, with a message, that stands for the client's ``exc``."""
    for exc_type, error_type, text in BACKEND_ERRORS + AIOHTTP_ERRORS:
        if isinstance(exc, exc_type):
            return error_type(f"{text} ({url}): {exc}" if url else f"{text}: {exc}")
    return BackendError(f"backend request failed: {exc!r}")


@contextlib.contextmanager
def map_backend_errors(url: str = "") -> Iterator[None]:
    """Turn the HTTP client's exceptions into BackendError subclasses, keeping the cause."""
    try:
        yield
    except (TimeoutError, BackendClientError, aiohttp.ClientError) as exc:
        raise backend_error_for(exc, url) from exc


class RelayResult:
    """What happened while relaying one answer."""

    __slots__ = ("broken", "cancelled", "response", "status")

    def __init__(
        self,
        response: web.StreamResponse,
        status: int,
        *,
        broken: bool = False,
        cancelled: bool = False,
    ) -> None:
        self.response = response
        self.status = status
        self.broken = broken  # the backend's stream broke after the headers were sent
        self.cancelled = cancelled  # the client went away mid-stream


class BackendProxy:
    """One keep-alive connection pool to the backend, shared by every request."""

    def __init__(self, base_url: str, *, limit: int | None, read_timeout_s: float) -> None:
        # A null worker has no backend URL: the pool is made on first use.
        self.base_url = base_url
        self._limit = limit
        self._read_timeout_s = read_timeout_s
        self._client: BackendClient | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """An aiohttp session, for handlers that shape answers from an aiohttp response."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit or 0, keepalive_timeout=30),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=self._read_timeout_s
                ),
            )
        return self._session

    @property
    def client(self) -> BackendClient:
        if self._client is None:
            self._client = BackendClient(
                self.base_url,
                limit=self._limit,
                connect_timeout_s=CONNECT_TIMEOUT_S,
                read_timeout_s=self._read_timeout_s,
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        if self._session is not None:
            await self._session.close()

    async def fetch(self, method: str, path_qs: str) -> tuple[BackendResponse, bytes]:
        """One request without a body, read whole (for the worker's own use)."""
        with map_backend_errors(self.base_url + path_qs):
            resp = await self.client.request(method, path_qs)
            try:
                return resp, await resp.read()
            finally:
                resp.release()

    async def forward(
        self,
        request: web.Request,
        method: str,
        path_qs: str,
        body: bytes,
        headers: Mapping[str, str],
        respond: Respond | None = None,
    ) -> RelayResult:
        """Send one request to the backend and relay its answer to ``request``'s client,
        or let ``respond`` (a handler's) make the answer from the backend's."""
        if respond is not None:
            return await self._forward_to_handler(request, method, path_qs, body, headers, respond)
        try:
            resp = await self.client.request(method, path_qs, headers, body)
        except (TimeoutError, BackendClientError) as exc:
            raise backend_error_for(exc, self.base_url + path_qs) from exc
        try:
            if resp.content_length is not None or method == "HEAD":
                try:
                    data = await resp.read()
                except (TimeoutError, BackendClientError) as exc:
                    raise backend_error_for(exc, self.base_url + path_qs) from exc
                out = web.Response(
                    body=data, status=resp.status, headers=relay_headers(resp.headers)
                )
                return RelayResult(out, resp.status)
            return await self._stream(request, resp)
        finally:
            resp.release()

    async def _forward_to_handler(
        self,
        request: web.Request,
        method: str,
        path_qs: str,
        body: bytes,
        headers: Mapping[str, str],
        respond: Respond,
    ) -> RelayResult:
        """The handler path: an aiohttp response for ``respond``; a failure before its
        answer started becomes an error answer, one after it cuts the connection."""
        url = self.base_url + path_qs
        with map_backend_errors(url):
            resp = await self.session.request(method, url, data=body, headers=headers)
        try:
            out = await respond(request, resp)
        except ConnectionError:
            started = request.get(PREPARED_KEY)
            return RelayResult(started or web.Response(status=499), 499, cancelled=True)
        except (TimeoutError, aiohttp.ClientError) as exc:
            if request.get(PREPARED_KEY) is None:
                raise backend_error_for(exc, url) from exc
            log.warning("backend answer broke while a handler relayed it: %s", exc)
            if request.transport is not None:
                request.transport.close()
            return RelayResult(request[PREPARED_KEY], 502, broken=True)
        finally:
            resp.release()
        return RelayResult(out, out.status)

    async def _stream(self, request: web.Request, resp: BackendResponse) -> RelayResult:
        out = web.StreamResponse(status=resp.status, headers=relay_headers(resp.headers))
        await out.prepare(request)
        try:
            while chunk := await resp.read_chunk():
                await out.write(chunk)  # waits while the client's buffer is full
        except (TimeoutError, BackendClientError) as exc:
            # Headers are gone already: tell an SSE client in-band, then cut the
            # connection without the final chunk so any HTTP client sees the break.
            log.warning("backend stream broke: %s", exc)
            if resp.content_type == "text/event-stream":
                with contextlib.suppress(ConnectionError):
                    await out.write(SSE_BROKEN)
            if request.transport is not None:
                request.transport.close()
            return RelayResult(out, 502, broken=True)
        except ConnectionError:
            return RelayResult(out, 499, cancelled=True)
        # A client that stops reading at the last event (an SSE client at its "finish" or
        # "[DONE]") may be gone already; it has the whole body, so this is still a success.
        with contextlib.suppress(ConnectionError):
            await out.write_eof()
        return RelayResult(out, resp.status)
