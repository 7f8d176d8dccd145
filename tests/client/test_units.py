"""The client's pure parts: SSE parsing, backoff, rendering, errors, and its exports."""

from __future__ import annotations

import importlib
import inspect
import random

import orjson
import pytest

import vespid.client
import vespid.client.errors
from vespid.client import ClientError, SSEEvent, SSEParser, completion_text
from vespid.client.call import (
    answer_text,
    error_line,
    is_openai_path,
    render_answer,
    render_body,
    stream_payload,
)
from vespid.client.client import Client
from vespid.client.dispatch import Target
from vespid.client.retry import describe_body, is_retryable, poll_delay_s
from vespid.errors import ConfigError, VespidError

STREAM = (
    b": a comment\r\n"
    b"event: token\r\n"
    b"id: 7\r\n"
    b"data: first line\r\n"
    b"data: second line\r\n"
    b"\r\n"
    b"retry: 1500\n"
    b'data:{"n": 2}\n'
    b"\n"
    b"data: cr only\r"
    b"\r"
    b"data\n"
    b"\n"
    b"data: [DONE]\n\n"
)
EVENTS = [
    SSEEvent("first line\nsecond line", "token", "7", None),
    SSEEvent('{"n": 2}', "message", "7", 1500),
    SSEEvent("cr only", "message", "7", 1500),
    SSEEvent("", "message", "7", 1500),  # a bare "data" field: one empty data line
    SSEEvent("[DONE]", "message", "7", 1500),
]


def parse(chunks: list[bytes]) -> list[SSEEvent]:
    parser = SSEParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    return events + parser.close()


def test_sse_parser_whole_stream() -> None:
    assert parse([STREAM]) == EVENTS


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8])
def test_sse_parser_any_split(size: int) -> None:
    """Chunk boundaries anywhere, even between CR and LF, give the same events."""
    chunks = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    assert parse(chunks) == EVENTS


def test_sse_parser_delivers_a_last_event_without_its_blank_line() -> None:
    assert parse([b"data: a\n\ndata: tail"]) == [SSEEvent("a"), SSEEvent("tail")]
    assert parse([b"data: a\n\ndata: tail\r"]) == [SSEEvent("a"), SSEEvent("tail")]
    assert parse([b": only a comment\n"]) == []


@pytest.mark.parametrize(
    ("data", "text"),
    [
        pytest.param('{"choices": [{"text": "Hel"}]}', "Hel", id="completions"),
        pytest.param('{"choices": [{"delta": {"content": "lo"}}]}', "lo", id="chat"),
        pytest.param('{"choices": [{"delta": {"role": "assistant"}}]}', "", id="chat-role"),
        pytest.param('{"choices": [], "usage": {"total_tokens": 3}}', "", id="usage-only"),
        pytest.param("[DONE]", None, id="done"),
        pytest.param('{"n": 1}', None, id="not-openai"),
        pytest.param("plain text", None, id="not-json"),
    ],
)
def test_completion_text(data: str, text: str | None) -> None:
    assert completion_text(SSEEvent(data)) == text


@pytest.mark.parametrize(
    ("attempt", "cap_s", "highest_s"),
    [
        pytest.param(0, 5.0, 2.0, id="first-wait-at-most-2**0+1"),  # 2**0 + U(0,1) <= 2
        pytest.param(1, 5.0, 3.0, id="second-wait-at-most-2**1+1"),  # 2**1 + U(0,1) <= 3
        pytest.param(3, 5.0, 5.0, id="capped-at-max-poll-interval"),  # min(8 + U, 5) = 5
        pytest.param(60, 5.0, 5.0, id="huge-attempt-no-overflow"),
        pytest.param(3, 0.05, 0.05, id="cap-below-the-0.1-floor"),  # lo = min(0.1, 0.05)
    ],
)
def test_poll_delay_bounds(attempt: int, cap_s: float, highest_s: float) -> None:
    rng = random.Random(1)
    delays = [poll_delay_s(attempt, cap_s, rng) for _ in range(2000)]
    assert max(delays) <= highest_s
    assert min(delays) >= min(0.1, cap_s)


def test_retryable_statuses() -> None:
    assert {s for s in range(400, 600) if is_retryable(s)} == {408, 429, *range(500, 600)}


def test_describe_body() -> None:
    assert describe_body({"error": "queue full"}) == "queue full"
    assert describe_body({"error": {"message": "bad"}}) == "bad"
    assert describe_body("x" * 400).endswith("...")
    assert describe_body({"other": 1}) == "{'other': 1}"


def test_render_body() -> None:
    assert render_body(b'{"a":1}', "application/json") == b'{\n  "a": 1\n}\n'
    assert render_body(b"hi", "text/plain") == b"hi\n"
    assert render_body(b"\x89PNG", "image/png") == b"\x89PNG"


def test_stream_payload_asks_openai_routes_for_a_stream() -> None:
    payload = {"prompt": "Once upon a time", "max_tokens": 32}
    streamed = {**payload, "stream": True}
    assert stream_payload("/v1/completions", payload) == streamed
    assert stream_payload("/v1/chat/completions/", payload) == streamed
    assert stream_payload("/v1/completions?x=1", payload) == streamed
    assert payload == {"prompt": "Once upon a time", "max_tokens": 32}  # not changed in place
    assert stream_payload("/v1/completions", {"stream": False}) == {"stream": False}
    assert stream_payload("/generate", payload) == payload
    assert stream_payload("/v1/completions", [payload]) == [payload]
    assert (is_openai_path("/v1/completions"), is_openai_path("/v1/models")) == (True, False)


def test_answer_text_of_completions_and_chats() -> None:
    assert answer_text({"choices": [{"text": "Hi"}]}) == "Hi"
    assert answer_text({"choices": [{"message": {"role": "assistant", "content": "Yo"}}]}) == "Yo"
    assert answer_text({"choices": [{"text": "a"}, {"text": "b"}]}) == "a\nb"
    assert answer_text({"choices": []}) is None
    assert answer_text({"error": "x"}) is None
    assert answer_text([1]) is None


def test_render_answer_prints_a_completion_as_its_text() -> None:
    body = b'{"choices": [{"text": " there"}], "usage": {"completion_tokens": 1}}'
    assert render_answer("/v1/completions", body, "application/json") == b" there\n"
    assert render_answer("/v1/completions", b"done\n", "text/plain") == b"done\n"
    error = b'{"error": "no"}'
    assert render_answer("/v1/completions", error, "application/json") == render_body(
        error, "application/json"
    )
    assert render_answer("/echo", body, "application/json") == render_body(body, "application/json")


def test_error_line_is_one_json_line() -> None:
    line = error_line(ClientError("bad\nthing", status=503))
    assert "\n" not in line
    assert orjson.loads(line) == {"error": "bad\nthing", "code": "client_error", "status": 503}
    assert orjson.loads(error_line(ConfigError("x")))["code"] == "config_error"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"base_url": "127.0.0.1:8080"}, "must be an http", id="no-scheme"),
        pytest.param({"api_key": ""}, "api_key is empty", id="empty-key"),
        pytest.param({"timeout_s": 0}, "timeout_s must be > 0", id="zero-timeout"),
        pytest.param({"max_attempts": 0}, "max_attempts must be at least 1", id="no-attempts"),
    ],
)
def test_client_settings_are_checked(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"base_url": "http://127.0.0.1:8080", "api_key": "k", **kwargs}
    with pytest.raises(ConfigError, match=message):
        Client(**args)  # type: ignore[arg-type]


async def test_a_client_must_be_opened() -> None:
    client = Client("http://127.0.0.1:1", "k")
    with pytest.raises(ClientError, match="async with"):
        await client.endpoint("e").request("/x", {})


def _isort_key(name: str) -> tuple[int, str]:
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return kind, name


@pytest.mark.parametrize(
    "name",
    [
        "vespid.client",
        "vespid.client.call",
        "vespid.client.client",
        "vespid.client.dispatch",
        "vespid.client.endpoint",
        "vespid.client.errors",
        "vespid.client.response",
        "vespid.client.retry",
        "vespid.client.session",
        "vespid.client.sse",
        "vespid.client.transport",
    ],
)
def test_all_is_sorted_and_importable(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported, key=_isort_key)
    for symbol in exported:
        assert hasattr(module, symbol), symbol


def test_every_client_error_is_exported_and_rooted_at_vespid_error() -> None:
    classes = [
        obj
        for obj in vars(vespid.client.errors).values()
        if inspect.isclass(obj) and issubclass(obj, ClientError)
    ]
    assert sorted(c.__name__ for c in classes) == sorted(vespid.client.errors.__all__)
    codes = set()
    for cls in classes:
        assert issubclass(cls, VespidError)
        assert cls.__name__ in vespid.client.__all__
        codes.add(cls.code)
    assert len(codes) == len(classes)  # each class has its own code


def test_a_dispatch_target_keeps_its_key_out_of_repr() -> None:
    target = Target("llm", "endpoint-secret")
    assert "endpoint-secret" not in repr(target)
    assert target.api_key == "endpoint-secret"
