"""What one client connection may make a port hold, and the answers when it asks for
more: ``ConnectionLimits`` (read from a component's settings), the errors it makes,
``raw_answer`` (a whole HTTP/1.1 answer for a refusal made before any request object
exists) and ``MalformedLog`` (one log line for a flood of refusals)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final, Protocol

from vespid.errors import (
    BodyTooLarge,
    HeadersTooLarge,
    HTTPFacingError,
    RequestTimeout,
    TargetTooLong,
    TooManyConnections,
)
from vespid.web import JSON_TYPE, error_body

__all__ = [
    "IDLE_TIMEOUT_S",
    "LINGER_BYTES",
    "LINGER_S",
    "MALFORMED_LOG_EVERY_S",
    "ConnectionLimits",
    "GuardSettings",
    "MalformedLog",
    "raw_answer",
]

# A kept-alive connection with nothing to do is closed after this long (aiohttp's old 75 s).
IDLE_TIMEOUT_S: Final = 75.0
# After a refusal the connection is half-closed and what the client still sends is read
# and dropped, up to this long and this much, so that its answer is not lost to a reset.
LINGER_S: Final = 1.0
LINGER_BYTES: Final = 1024 * 1024
MALFORMED_LOG_EVERY_S: Final = 10.0


class GuardSettings(Protocol):
    """The settings a component's limits are read from (``VESPID_MAX_HEADER_BYTES``,
    ``VESPID_MAX_HEADERS``, ``VESPID_MAX_REQUEST_LINE_BYTES``, ``VESPID_HEADER_TIMEOUT_S``,
    ``VESPID_BODY_TIMEOUT_S``, ``VESPID_MAX_CONNECTIONS``)."""

    @property
    def max_header_bytes(self) -> int: ...
    @property
    def max_headers(self) -> int: ...
    @property
    def max_request_line_bytes(self) -> int: ...
    @property
    def header_timeout_s(self) -> float: ...
    @property
    def body_timeout_s(self) -> float: ...
    @property
    def max_connections(self) -> int: ...


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The limits of one server's ports; each refusal names its limit and its setting."""

    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    max_request_line_bytes: int = 8190
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    max_connections: int = 1024
    idle_timeout_s: float = IDLE_TIMEOUT_S

    @classmethod
    def of(cls, settings: GuardSettings) -> ConnectionLimits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
            max_request_line_bytes=settings.max_request_line_bytes,
            header_timeout_s=settings.header_timeout_s,
            body_timeout_s=settings.body_timeout_s,
            max_connections=settings.max_connections,
        )

    @property
    def max_head_bytes(self) -> int:
        """Raw bytes a request's head may take: its line, its headers and their framing."""
        return self.max_request_line_bytes + self.max_header_bytes + 4 * self.max_headers + 64

    def headers_too_large(self) -> HeadersTooLarge:
        return HeadersTooLarge(
            f"request headers exceed {self.max_header_bytes} bytes in all "
            f"(VESPID_MAX_HEADER_BYTES) or {self.max_headers} headers (VESPID_MAX_HEADERS)",
            max_header_bytes=self.max_header_bytes,
            max_headers=self.max_headers,
        )

    def target_too_long(self) -> TargetTooLong:
        return TargetTooLong(
            f"request target is longer than {self.max_request_line_bytes} bytes "
            "(VESPID_MAX_REQUEST_LINE_BYTES)",
            max_request_line_bytes=self.max_request_line_bytes,
        )

    def body_too_large(self, max_bytes: int, setting: str) -> BodyTooLarge:
        """A body over ``max_bytes``, the limit ``setting`` names (each app has its own)."""
        return BodyTooLarge(
            f"request body is larger than {setting} ({max_bytes} bytes)", max_body_bytes=max_bytes
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
    body = error_body(exc)
    try:
        phrase = HTTPStatus(exc.status_code).phrase
    except ValueError:
        phrase = "Error"
    head = (
        f"HTTP/1.1 {exc.status_code} {phrase}\r\nContent-Type: {JSON_TYPE}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class MalformedLog:
    """One warning per malformed or refused request, at most one every ``every_s``
    seconds on ``logger``; the next line says how many were left out in between, so a
    flood costs a line now and then, never a traceback."""

    def __init__(self, logger: logging.Logger, every_s: float = MALFORMED_LOG_EVERY_S) -> None:
        self.logger = logger
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
        self.logger.warning("malformed request from %s: %.200s%s", peer, problem, more)
