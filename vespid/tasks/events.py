"""The task event protocol: what a task program prints on stdout, one JSON object a line.

Every event is a JSON object whose ``event`` field names its type::

    {"event": "connection", "status": "connected"}
    {"event": "worker", "status": "loading", "message": "Loading model..."}
    {"event": "text_delta", "delta": "Hello "}
    {"event": "text", "content": "Hello World!"}
    {"event": "finish", "status": "completed"}

Known types must carry their fields with the right JSON types; a type vespid does
not know passes through untouched. A line that is not a JSON object (or a known
event with a wrong field) never stops a task: it becomes a ``log`` event at level
``error`` that quotes the line. Blank lines are skipped. Task authors write events
with ``emit_event``, which flushes every line.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any, Final, Literal, NotRequired, TypedDict

import orjson

__all__ = [
    "EVENT_FIELDS",
    "FINISH_STATUSES",
    "LOG_LEVELS",
    "ConnectionEvent",
    "Event",
    "FinishEvent",
    "LogEvent",
    "TaskEvent",
    "TextDeltaEvent",
    "TextEvent",
    "WorkerEvent",
    "check_event",
    "emit_event",
    "parse_line",
]

FINISH_STATUSES: Final = ("completed", "failed")
LOG_LEVELS: Final = ("debug", "info", "warning", "error")

# Per known type: each field it must have, with the JSON types it accepts (or the
# values it may take), then the optional ones.
EVENT_FIELDS: Final[dict[str, dict[str, tuple[object, ...]]]] = {
    "connection": {"status": (str,)},
    "worker": {"status": (str,), "message?": (str,)},
    "text_delta": {"delta": (str,)},
    "text": {"content": (str,)},
    "finish": {
        "status": FINISH_STATUSES,
        "reason?": (str,),
        "message?": (str,),
        "exit_code?": (int,),
    },
    "log": {"level": LOG_LEVELS, "message": (str,)},
}

_TYPE_NAME: Final = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
QUOTED_LINE_CHARS: Final = 1000  # how much of a bad line a log event quotes


class ConnectionEvent(TypedDict):
    event: Literal["connection"]
    status: str


class WorkerEvent(TypedDict):
    event: Literal["worker"]
    status: str  # initializing, loading, ready, working, cleaning_up, ...
    message: NotRequired[str]


class TextDeltaEvent(TypedDict):
    event: Literal["text_delta"]
    delta: str


class TextEvent(TypedDict):
    event: Literal["text"]
    content: str


class FinishEvent(TypedDict):
    event: Literal["finish"]
    status: Literal["completed", "failed"]
    reason: NotRequired[str]  # set by vespid: "timeout" or "exited"
    message: NotRequired[str]
    exit_code: NotRequired[int]


class LogEvent(TypedDict):
    event: Literal["log"]
    level: Literal["debug", "info", "warning", "error"]
    message: str
    line: NotRequired[str]  # the offending stdout line, when vespid wrote the event


Event = ConnectionEvent | WorkerEvent | TextDeltaEvent | TextEvent | FinishEvent | LogEvent


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One event: its type, its fields, and its JSON text as the task printed it."""

    type: str
    data: dict[str, Any]
    raw: bytes

    @classmethod
    def make(cls, event: str, **fields: Any) -> TaskEvent:
        """An event that vespid writes itself (a ``log`` or a ``finish``)."""
        data = {"event": event, **fields}
        return cls(event, data, orjson.dumps(data))

    @property
    def is_finish(self) -> bool:
        return self.type == "finish"

    def sse(self) -> bytes:
        """One Server-Sent Events message: ``event:`` names the type, ``data:`` the JSON."""
        return b"event: " + self.type.encode() + b"\ndata: " + self.raw + b"\n\n"


def check_event(value: object) -> str | None:
    """None when ``value`` is a valid event, else what is wrong with it."""
    if not isinstance(value, dict):
        return f"not a JSON object (a JSON {_json_type(value)})"
    kind = value.get("event")
    if not isinstance(kind, str):
        return "no 'event' field naming the event type"
    if not _TYPE_NAME.match(kind):
        return "the event type must be 1-64 letters, digits or _ . : -"
    for name, accepted in EVENT_FIELDS.get(kind, {}).items():
        optional = name.endswith("?")
        name = name.rstrip("?")
        if name not in value:
            if optional:
                continue
            return f"{kind} event: {name!r} is missing"
        got = value[name]
        types = tuple(t for t in accepted if isinstance(t, type))
        if types:
            if not isinstance(got, types) or isinstance(got, bool):
                return f"{kind} event: {name!r} must be {_json_name(types)}"
        elif got not in accepted:
            choices = " or ".join(repr(a) for a in accepted)
            return f"{kind} event: {name!r} must be {choices} (got {got!r})"
    return None


def parse_line(line: bytes) -> TaskEvent | None:
    """The event on one stdout line; None for a blank line; a ``log`` event for a bad one."""
    text = line.strip()
    if not text:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        problem: str | None = "not valid JSON"
    else:
        problem = check_event(value)
    if problem is not None:
        quoted = text.decode(errors="replace")[:QUOTED_LINE_CHARS]
        return TaskEvent.make(
            "log", level="error", message=f"task printed a bad event line: {problem}", line=quoted
        )
    # A CR inside the JSON's whitespace would end the SSE line early: write it anew.
    raw = orjson.dumps(value) if b"\r" in text else text
    return TaskEvent(value["event"], value, raw)


def emit_event(
    event: str,
    data: Mapping[str, Any] | None = None,
    /,
    *,
    file: IO[str] | None = None,
    **fields: Any,
) -> None:
    """Print one event as a JSON line on stdout (or ``file``) and flush it.

    ``emit_event("worker", status="loading", message="Loading model...")`` or, in the
    style of older workers, ``emit_event("text", {"content": "Hello"})``.
    """
    out = sys.stdout if file is None else file
    line = json.dumps({"event": event, **(data or {}), **fields}, allow_nan=False)
    out.write(line + "\n")
    out.flush()


def _json_type(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number"


def _json_name(types: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", dict: "an object"}
    return " or ".join(names.get(t, t.__name__) for t in types)
