"""What one client connection may make the worker hold, and the answers when it asks
for more, for every port the worker serves (the lean front, aiohttp, the ``/session/end``
port, the null worker's control port).

- headers: ``VESPID_MAX_HEADER_BYTES`` in all, ``VESPID_MAX_HEADERS`` of them (431), a
  request target of ``VESPID_MAX_REQUEST_LINE_BYTES`` (414); a declared
  ``Content-Length`` over ``VESPID_MAX_BODY_BYTES`` is refused from the header (413);
- time: headers within ``VESPID_HEADER_TIMEOUT_S`` of their first byte, the body within
  ``VESPID_BODY_TIMEOUT_S`` after them (408, then the connection is closed);
- connections: ``VESPID_MAX_CONNECTIONS`` per port (503 and closed beyond).

Every refusal is a JSON error naming the limit and its setting; the connection is then
half-closed and lingers a moment (``LINGER_S``, ``LINGER_BYTES``: read and dropped) so the
answer reaches a client that is still sending. A malformed request is
logged in one line, at most one a few seconds (``MalformedLog``), never a traceback.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Final

import orjson

from vespid.errors import BodyTooLarge, HTTPFacingError
from vespid.web import JSON_TYPE
from vespid.worker.settings import WorkerSettings

__all__ = [
    "LINGER_BYTES",
    "LINGER_S",
    "HeadersTooLarge",
    "Limits",
    "MalformedLog",
    "RequestTimeout",
    "TargetTooLong",
    "TooManyConnections",
    "raw_answer",
]

log = logging.getLogger("vespid.worker")

MALFORMED_LOG_EVERY_S: Final = 10.0
# After a refusal the connection is half-closed and what the client still sends is read
# and dropped, up to this long and this much, so that its answer is not lost to a reset.
LINGER_S: Final = 1.0
LINGER_BYTES: Final = 1024 * 1024


class HeadersTooLarge(HTTPFacingError):
    status_code = 431
    code = "headers_too_large"


class TargetTooLong(HTTPFacingError):
    status_code = 414
    code = "target_too_long"


class RequestTimeout(HTTPFacingError):
    status_code = 408
    code = "request_timeout"


class TooManyConnections(HTTPFacingError):
    status_code = 503
    code = "too_many_connections"


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of one worker's ports, read from its settings."""

    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    max_request_line: int = 8190
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    max_connections: int = 1024
    max_body_bytes: int = 16 * 1024 * 1024

    @classmethod
    def of(cls, settings: WorkerSettings) -> Limits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
            max_request_line=settings.max_request_line_bytes,
            header_timeout_s=settings.header_timeout_s,
            body_timeout_s=settings.body_timeout_s,
            max_connections=settings.max_connections,
            max_body_bytes=settings.max_body_bytes,
        )

    @property
    def max_head_bytes(self) -> int:
        """Raw bytes a request's head may take: its line, its headers and their framing."""
        return self.max_request_line + self.max_header_bytes + 4 * self.max_headers + 64

    def headers_too_large(self) -> HeadersTooLarge:
        return HeadersTooLarge(
            f"request headers exceed {self.max_header_bytes} bytes in all "
            f"(VESPID_MAX_HEADER_BYTES) or {self.max_headers} headers (VESPID_MAX_HEADERS)",
            max_header_bytes=self.max_header_bytes,
            max_headers=self.max_headers,
        )

    def target_too_long(self) -> TargetTooLong:
        return TargetTooLong(
            f"request target is longer than {self.max_request_line} bytes "
            "(VESPID_MAX_REQUEST_LINE_BYTES)",
            max_request_line_bytes=self.max_request_line,
        )

    def body_too_large(
        self, max_bytes: int | None = None, setting: str = "VESPID_MAX_BODY_BYTES"
    ) -> BodyTooLarge:
        limit = self.max_body_bytes if max_bytes is None else max_bytes
        return BodyTooLarge(
            f"request body is larger than {setting} ({limit} bytes)", max_body_bytes=limit
        )

    def head_too_slow(self) -> RequestTimeout:
        return RequestTimeout(
            f"request headers did not arrive within {self.header_timeout_s:g} s "
            "(VESPID_HEADER_TIMEOUT_S)"
        )

    def body_too_slow(self) -> RequestTimeout:
        return RequestTimeout(
            f"request body did not arrive within {self.body_timeout_s:g} s (VESPID_BODY_TIMEOUT_S)"
        )

    def too_many_connections(self) -> TooManyConnections:
        return TooManyConnections(
            f"this port holds {self.max_connections} connections already "
            "(VESPID_MAX_CONNECTIONS); try again later"
        )


def raw_answer(exc: HTTPFacingError) -> bytes:
    """A whole HTTP/1.1 answer for ``exc`` that closes the connection: for refusals made
    before (or instead of) a request object exists."""
    body = orjson.dumps(exc.body())
    phrase = {408: "Request Timeout", 413: "Content Too Large", 414: "URI Too Long",
              431: "Request Header Fields Too Large", 503: "Service Unavailable"}  # fmt: skip
    head = (
        f"HTTP/1.1 {exc.status_code} {phrase.get(exc.status_code, 'Error')}\r\n"
        f"Content-Type: {JSON_TYPE}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class MalformedLog:
    """One log line per malformed request, at most one every ``every_s`` seconds; the
    next line says how many were left out in between."""

    def __init__(self, every_s: float = MALFORMED_LOG_EVERY_S) -> None:
        self.every_s = every_s
        self._next = 0.0
        self._left_out = 0

    def __call__(self, peer: object, problem: str) -> None:
        now = time.monotonic()
        if now < self._next:
            self._left_out += 1
            return
        self._next = now + self.every_s
        more = f" ({self._left_out} more since the last line)" if self._left_out else ""
        self._left_out = 0
        log.warning("malformed request from %s: %.200s%s", peer, problem, more)
