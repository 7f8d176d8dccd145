"""The bits of HTTP/1.1 the lean front (``vespid.worker.front``) writes and measures:
status lines made once per status, the ``Date`` line made once a second, and where a
request ends in a stretch of pipelined input."""

from __future__ import annotations

import contextlib
import email.utils
import http
import time
from typing import Final

import httptools

__all__ = ["STATUS_LINES", "DateLine", "message_end"]


class _StatusLines(dict[int, bytes]):
    """``HTTP/1.1 <status> <phrase>\\r\\n`` by status, made on first use."""

    def __missing__(self, status: int) -> bytes:
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        line = f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")
        self[status] = line
        return line


STATUS_LINES: Final = _StatusLines()


class DateLine:
    """The Date header's line, made once a second."""

    def __init__(self) -> None:
        self._second = 0
        self._line = b""

    def line(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._line = f"Date: {email.utils.formatdate(now, usegmt=True)}\r\n".encode()
        return self._line


class _Counter:
    """Parser callbacks that only count finished messages (to find where one ends)."""

    def __init__(self) -> None:
        self.done = 0

    def on_message_complete(self) -> None:
        self.done += 1


def message_end(raw: bytes | bytearray, n: int) -> int:
    """The offset in ``raw`` just past its ``n``-th complete request (n >= 1).

    Found by parsing prefixes with a fresh parser (a binary search): the parser does
    not tell where a message ends. Only needed when a request for aiohttp follows
    requests served here in one stretch of input, which is rare.
    """
    lo, hi = 1, len(raw)
    while lo < hi:
        mid = (lo + hi) // 2
        counter = _Counter()
        # An error past the n-th message is for aiohttp to answer.
        with contextlib.suppress(httptools.HttpParserError):
            httptools.HttpRequestParser(counter).feed_data(bytes(raw[:mid]))
        if counter.done >= n:
            hi = mid
        else:
            lo = mid + 1
    return lo
