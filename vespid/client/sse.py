"""Server-sent events: an incremental parser, and the text pieces of OpenAI streams.

The parser follows the WHATWG rules: lines end in CRLF, LF or CR (a line end may
be split across chunks); ``data`` lines of one event are joined with ``\\n``; a
blank line dispatches; lines starting with ``:`` are comments; ``id`` persists
across events; ``retry`` takes digits only. One leniency: an event whose closing
blank line never comes (the stream just ends) is still delivered by ``close()``,
since servers often omit it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import orjson

__all__ = ["SSEEvent", "SSEParser", "choice_texts", "completion_text"]

_LINE_END: Final = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event."""

    data: str
    event: str = "message"
    id: str | None = None
    retry_ms: int | None = None

    def json(self) -> Any:
        """``data`` parsed as JSON (``orjson.JSONDecodeError``, a ``ValueError``, if not)."""
        return orjson.loads(self.data)


class SSEParser:
    """Feed it bytes as they arrive; it returns the events each chunk completes."""

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event = ""
        self._last_id: str | None = None
        self._retry_ms: int | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        self._buffer += chunk
        events: list[SSEEvent] = []
        start = 0
        while match := _LINE_END.search(self._buffer, start):
            if match.group() == b"\r" and match.end() == len(self._buffer):
                break  # a CR at the end may be the first half of a CRLF: wait for more
            self._line(self._buffer[start : match.start()].decode("utf-8", "replace"), events)
            start = match.end()
        self._buffer = self._buffer[start:]
        return events

    def close(self) -> list[SSEEvent]:
        """End of stream: deliver what is left, including an event with no closing blank line."""
        events: list[SSEEvent] = []
        if self._buffer:
            tail, self._buffer = self._buffer.rstrip(b"\r"), b""
            self._line(tail.decode("utf-8", "replace"), events)
        self._line("", events)
        return events

    def _line(self, line: str, events: list[SSEEvent]) -> None:
        if not line:
            if self._data:
                events.append(
                    SSEEvent(
                        data="\n".join(self._data),
                        event=self._event or "message",
                        id=self._last_id,
                        retry_ms=self._retry_ms,
                    )
                )
            self._data, self._event = [], ""
            return
        if line.startswith(":"):
            return
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry_ms = int(value)


def choice_texts(value: Any, nested: str) -> list[str] | None:
    """The texts of an OpenAI answer's choices: each choice's ``text``, else its
    ``nested`` object's ``content`` (``"delta"`` in a streamed chat event, ``"message"``
    in a whole chat answer); None when ``value`` has no ``choices`` list."""
    if not isinstance(value, dict) or not isinstance(value.get("choices"), list):
        return None
    texts: list[str] = []
    for choice in value["choices"]:
        if not isinstance(choice, dict):
            continue
        text = choice.get("text")
        inner = choice.get(nested)
        if text is None and isinstance(inner, dict):
            text = inner.get("content")
        if isinstance(text, str):
            texts.append(text)
    return texts


def completion_text(event: SSEEvent) -> str | None:
    """The text an OpenAI completions or chat-completions event carries, else None.

    ``data: {"choices": [{"text": "Hel"}]}`` gives ``"Hel"``;
    ``{"choices": [{"delta": {"content": "lo"}}]}`` gives ``"lo"``; a final event
    with only usage gives ``""``; ``[DONE]`` and non-OpenAI events give None.
    """
    if event.data == "[DONE]":
        return None
    try:
        value: Any = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        return None
    pieces = choice_texts(value, "delta")
    return None if pieces is None else "".join(pieces)
