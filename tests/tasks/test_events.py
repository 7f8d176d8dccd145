"""The event protocol: what counts as an event, what becomes a log event, SSE framing."""

from __future__ import annotations

import io

import orjson
import pytest

from vespid.tasks.events import TaskEvent, check_event, emit_event, parse_line


@pytest.mark.parametrize(
    ("line", "event_type", "data"),
    [
        pytest.param(
            b'{"event": "connection", "status": "connected"}\n',
            "connection",
            {"event": "connection", "status": "connected"},
            id="connection",
        ),
        pytest.param(
            b'{"event": "worker", "status": "loading", "message": "Loading model..."}',
            "worker",
            {"event": "worker", "status": "loading", "message": "Loading model..."},
            id="worker",
        ),
        pytest.param(
            b'{"event": "finish", "status": "failed", "exit_code": 1}',
            "finish",
            {"event": "finish", "status": "failed", "exit_code": 1},
            id="finish-failed",
        ),
        pytest.param(
            b'{"event": "gpu_stats", "util": 0.5}',
            "gpu_stats",
            {"event": "gpu_stats", "util": 0.5},
            id="unknown-type-passes",
        ),
    ],
)
def test_valid_lines_keep_their_text(line: bytes, event_type: str, data: dict[str, object]) -> None:
    event = parse_line(line)
    assert event is not None
    assert (event.type, event.data, event.raw) == (event_type, data, line.strip())


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        pytest.param(b"Loading shards: 100%", "not valid JSON", id="plain-text"),
        pytest.param(b"[1, 2]", "not a JSON object (a JSON array)", id="array"),
        pytest.param(b'"text"', "not a JSON object (a JSON string)", id="string"),
        pytest.param(b"NaN", "not valid JSON", id="nan"),
        pytest.param(b'{"status": "x"}', "no 'event' field naming the event type", id="no-event"),
        pytest.param(
            b'{"event": "a\\nb"}', "the event type must be 1-64 letters", id="newline-in-type"
        ),
        pytest.param(
            b'{"event": "text_delta", "delta": 5}',
            "text_delta event: 'delta' must be a string",
            id="delta-type",
        ),
        pytest.param(b'{"event": "text"}', "text event: 'content' is missing", id="no-content"),
        pytest.param(
            b'{"event": "finish", "status": "ok"}',
            "finish event: 'status' must be 'completed' or 'failed' (got 'ok')",
            id="finish-status",
        ),
        pytest.param(
            b'{"event": "finish", "status": "failed", "exit_code": true}',
            "finish event: 'exit_code' must be an integer",
            id="bool-is-not-int",
        ),
        pytest.param(b"\xff\xfe", "not valid JSON", id="not-utf8"),
    ],
)
def test_bad_lines_become_error_log_events(line: bytes, problem: str) -> None:
    event = parse_line(line)
    assert event is not None
    assert event.type == "log"
    assert event.data["level"] == "error"
    assert problem in event.data["message"]
    assert event.data["line"] == line.decode(errors="replace")
    assert check_event(orjson.loads(event.raw)) is None  # the log event itself is valid


def test_blank_lines_are_skipped() -> None:
    assert parse_line(b"  \n") is None


def test_carriage_return_inside_json_is_written_anew_for_sse() -> None:
    event = parse_line(b'{"event": "text",\r"content": "x"}')
    assert event is not None
    assert event.raw == b'{"event":"text","content":"x"}'


def test_sse_framing_is_one_message_per_event() -> None:
    event = TaskEvent.make("finish", status="completed")
    assert event.sse() == b'event: finish\ndata: {"event":"finish","status":"completed"}\n\n'


def test_emit_event_writes_one_flushed_line_in_either_style() -> None:
    class Recorder(io.StringIO):
        flushes = 0

        def flush(self) -> None:
            self.flushes += 1

    out = Recorder()
    emit_event("worker", status="loading", message="Loading", file=out)
    emit_event("text", {"content": "Hello"}, file=out)
    lines = out.getvalue().splitlines()
    assert [orjson.loads(line) for line in lines] == [
        {"event": "worker", "status": "loading", "message": "Loading"},
        {"event": "text", "content": "Hello"},
    ]
    assert out.flushes == 2
    with pytest.raises(ValueError, match="JSON compliant"):
        emit_event("worker", status="x", value=float("nan"), file=out)
