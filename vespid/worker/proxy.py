"""Forwarding to the model server: one pooled HTTP client, streaming relay, error mapping.

Non-streamed answers (with a Content-Length) are read whole and sent on; anything
else (SSE, NDJSON, chunked) is relayed chunk by chunk as it arrives. The status,
content type and body reach the client unchanged; only hop-by-hop headers are
dropped. The mapping from the HTTP client's exceptions to vespid's errors lives
in ``map_backend_errors`` and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Final

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from vespid.errors import BackendError, BackendTimeout, BackendUnavailable

__all__ = [
    "BACKEND_ERRORS",
    "PREPARED_KEY",
    "BackendProxy",
    "RelayResult",
    "map_backend_errors",
    "relay_headers",
]

log = logging.getLogger("vespid.worker")

HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "date",
        "server",
    }
)

# Set on a request once its answer has started (by the worker's on_response_prepare hook).
PREPARED_KEY: Final = web.RequestKey("vespid.prepared", web.StreamResponse)

# Most specific first: the first entry that matches decides.
BACKEND_ERRORS: Final[tuple[tuple[type[BaseException], type[BackendError], str], ...]] = (
    (aiohttp.ServerTimeoutError, BackendTimeout, "backend did not answer in time"),
    (aiohttp.ConnectionTimeoutError, BackendTimeout, "connecting to the backend timed out"),
    (aiohttp.SocketTimeoutError, BackendTimeout, "backend went silent"),
    (asyncio.TimeoutError, BackendTimeout, "backend did not answer in time"),
    (aiohttp.ClientConnectorError, BackendUnavailable, "backend refused the connection"),
    (aiohttp.ServerDisconnectedError, BackendUnavailable, "backend closed the connection"),
    (aiohttp.ClientOSError, BackendUnavailable, "connection to the backend failed"),
    (aiohttp.ClientPayloadError, BackendError, "backend sent a broken body"),
    (aiohttp.ClientResponseError, BackendError, "backend sent an invalid response"),
    (aiohttp.InvalidURL, BackendError, "backend URL is invalid"),
    (aiohttp.NonHttpUrlClientError, BackendError, "backend URL is not http(s)"),
    (aiohttp.RedirectClientError, BackendError, "backend redirected somewhere invalid"),
    (aiohttp.UploadAbortedError, BackendError, "sending the body to the backend failed"),
    (aiohttp.ClientConnectionError, BackendUnavailable, "connection to the backend failed"),
)


@contextlib.contextmanager
def map_backend_errors(url: str = "") -> Iterator[None]:
    """Turn the HTTP client's exceptions into BackendError subclasses, keeping the cause."""
    try:
        yield
    except (TimeoutError, aiohttp.ClientError) as exc:
        for exc_type, error_type, text in BACKEND_ERRORS:
            if isinstance(exc, exc_type):
                raise error_type(f"{text} ({url}): {exc}" if url else f"{text}: {exc}") from exc
        raise BackendError(f"backend request failed: {exc!r}") from exc


def relay_headers(headers: Mapping[str, str]) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in HOP_BY_HOP)


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
        self.base_url = base_url
        self._limit = limit
        self._read_timeout_s = read_timeout_s
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._limit or 0, keepalive_timeout=30, ttl_dns_cache=None
                ),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=10, sock_read=self._read_timeout_s
                ),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def forward(
        self,
        request: web.Request,
        method: str,
        path_qs: str,
        body: bytes,
        headers: Mapping[str, str],
        respond: Callable[[web.Request, aiohttp.ClientResponse], Awaitable[web.StreamResponse]]
        | None = None,
    ) -> RelayResult:
        """Send one request to the backend and relay its answer to ``request``'s client,
        or let ``respond`` (a handler's) make the answer from the backend's."""
        url = self.base_url + path_qs
        with map_backend_errors(url):
            resp = await self.session.request(method, url, data=body, headers=headers)
        try:
            if respond is not None:
                return await self._respond(request, resp, respond, url)
            if resp.content_length is not None or method == "HEAD":
                with map_backend_errors(url):
                    data = await resp.read()
                out = web.Response(
                    body=data, status=resp.status, headers=relay_headers(resp.headers)
                )
                return RelayResult(out, resp.status)
            return await self._stream(request, resp)
        finally:
            resp.release()

    async def _respond(
        self,
        request: web.Request,
        resp: aiohttp.ClientResponse,
        respond: Callable[[web.Request, aiohttp.ClientResponse], Awaitable[web.StreamResponse]],
        url: str,
    ) -> RelayResult:
        """Run a handler's ``respond``; a failure before its answer started becomes an error
        answer, one after it cuts the connection (the status is gone already)."""
        try:
            out = await respond(request, resp)
        except ConnectionError:
            started = request.get(PREPARED_KEY)
            return RelayResult(started or web.Response(status=499), 499, cancelled=True)
        except (TimeoutError, aiohttp.ClientError) as exc:
            started = request.get(PREPARED_KEY)
            if started is None:
                with map_backend_errors(url):
                    raise
            log.warning("backend answer broke while a handler relayed it: %s", exc)
            if request.transport is not None:
                request.transport.close()
            return RelayResult(started, 502, broken=True)
        return RelayResult(out, out.status)

    async def _stream(self, request: web.Request, resp: aiohttp.ClientResponse) -> RelayResult:
        out = web.StreamResponse(status=resp.status, headers=relay_headers(resp.headers))
        await out.prepare(request)
        try:
            async for chunk in resp.content.iter_any():
                await out.write(chunk)
        except (
            TimeoutError,
            aiohttp.ClientPayloadError,
            aiohttp.ClientOSError,
            aiohttp.ServerDisconnectedError,
        ) as exc:
            # Headers are gone already: tell an SSE client in-band, then cut the
            # connection without the final chunk so any HTTP client sees the break.
            log.warning("backend stream broke: %s", exc)
            if resp.content_type == "text/event-stream":
                with contextlib.suppress(ConnectionError):
                    await out.write(
                        b'event: error\ndata: {"error": "backend stream broke", '
                        b'"code": "backend_error"}\n\n'
                    )
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
