"""A worker's answer as the client hands it back: status, headers, and the body.

A non-streamed answer is read whole before it is returned; a streamed one
(``stream=True``) keeps its connection until the body is read to the end or the
response is closed. Either way the same methods work: ``read()``, ``text()``,
``json()``, ``iter_chunks()``, ``iter_events()`` (SSE) and ``iter_text()`` (the
text pieces of an OpenAI completions stream). Bodies are bytes, so images, audio
and other binary answers come back unchanged with their ``content_type``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from types import TracebackType
from typing import Any

import aiohttp
import orjson

from vespid.client.errors import ClientError, RequestTimeout, WorkerUnavailable
from vespid.client.sse import SSEEvent, SSEParser, completion_text

__all__ = ["Response"]


class Response:
    """One worker answer (always 2xx: other statuses raise ``WorkerError``)."""

    def __init__(
        self,
        *,
        status: int,
        headers: Mapping[str, str],
        content_type: str,
        charset: str | None,
        worker_url: str,
        auth_data: dict[str, Any],
        attempts: int,
        body: bytes | None = None,
        raw: aiohttp.ClientResponse | None = None,
        idle_timeout_s: float | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.content_type = content_type
        self.charset = charset
        self.worker_url = worker_url
        """Base URL of the worker that answered."""
        self.auth_data = auth_data
        """The router's answer that was sent to the worker as ``auth_data``."""
        self.attempts = attempts
        """How many workers were tried, this one included."""
        self._body = body
        self._raw = raw
        self._idle_timeout_s = idle_timeout_s
        self._consumed = False

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.content_type} from {self.worker_url}>"

    @property
    def streamed(self) -> bool:
        """True while the body is still coming from the worker."""
        return self._body is None

    async def read(self) -> bytes:
        """The whole body (what is left of it, for a stream that was partly iterated)."""
        if self._body is None:
            if self._consumed:
                raise ClientError("the streamed body was already iterated; it cannot be re-read")
            self._body = b"".join([chunk async for chunk in self.iter_chunks()])
        return self._body

    async def text(self) -> str:
        return (await self.read()).decode(self.charset or "utf-8", "replace")

    async def json(self) -> Any:
        body = await self.read()
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ClientError(
                f"the worker's answer is not JSON (content type {self.content_type!r}, "
                f"{len(body)} bytes); use read() or text() for it"
            ) from None

    async def iter_chunks(self) -> AsyncGenerator[bytes, None]:
        """The body in pieces as they arrive (one piece for a non-streamed answer)."""
        if self._body is not None:
            if self._body:
                yield self._body
            return
        raw = self._raw
        if raw is None or self._consumed:
            raise ClientError("the streamed body was already iterated")
        self._consumed = True
        try:
            while True:
                try:
                    async with asyncio.timeout(self._idle_timeout_s):
                        chunk = await raw.content.readany()
                except TimeoutError:
                    raise RequestTimeout(
                        f"the worker at {self.worker_url} sent nothing for "
                        f"{self._idle_timeout_s:g} s in the middle of a stream",
                        idle_timeout_s=self._idle_timeout_s,
                    ) from None
                except aiohttp.ClientError as exc:
                    raise WorkerUnavailable(
                        f"the worker at {self.worker_url} cut the stream "
                        f"({type(exc).__name__}: {exc}); the answer is incomplete",
                        url=self.worker_url,
                    ) from exc
                if not chunk:
                    return
                yield chunk
        finally:
            raw.release()

    async def iter_events(self) -> AsyncGenerator[SSEEvent, None]:
        """Server-sent events, parsed, as they arrive."""
        parser = SSEParser()
        async with aclosing(self.iter_chunks()) as chunks:
            async for chunk in chunks:
                for event in parser.feed(chunk):
                    yield event
        for event in parser.close():
            yield event

    async def iter_text(self) -> AsyncGenerator[str, None]:
        """The text pieces of an OpenAI completions/chat SSE stream, up to ``[DONE]``."""
        async with aclosing(self.iter_events()) as events:
            async for event in events:
                if event.data == "[DONE]":
                    return
                piece = completion_text(event)
                if piece:
                    yield piece

    async def close(self) -> None:
        """Give the connection back without reading the rest of a stream."""
        if self._raw is not None:
            self._raw.close()  # after a full read the connection is already back in the pool

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
