"""A stand-in for vLLM's OpenAI-compatible server, with its sleep mode, on its wire format.

Routes: ``POST /v1/completions`` and ``POST /v1/chat/completions`` (whole answers, or SSE
with ``"stream": true``: one ``data: {chunk}`` per token, then ``data: [DONE]``), ``GET
/v1/models``, ``GET /health`` (200, also while asleep: vLLM's only checks the engine is
alive) and, as vLLM serves them with ``--enable-sleep-mode`` and ``VLLM_SERVER_DEV_MODE=1``:

- ``POST /sleep?level=1`` (weights to CPU memory) or ``level=2`` (weights discarded),
  ``mode=abort`` (the default: requests in flight end with ``finish_reason: "abort"``) or
  ``mode=wait`` (they finish first); answers 200 with an empty body.
- ``POST /wake_up`` (optional ``tags``, ignored here); answers 200 with an empty body.
- ``GET /is_sleeping``: ``{"is_sleeping": bool}``.

Without ``sleep_mode`` those three are 404, as on a vLLM started without the flags.
What vLLM does with a generation request while asleep has changed across versions (older
ones crashed the engine: vllm-project/vllm#15483); this stand-in holds it until woken and
counts it in ``requests_while_asleep``, which a worker's tests expect to stay 0.

Timing, to stand for a given model (``vespid simulate``'s worker model): ``slots`` sequences
at once, each decoding at ``decode_tps / (1 + decode_slowdown × (k − 1))`` tokens/s while
``k`` hold a slot, after a prefill of ``prompt tokens / prefill_tps`` seconds in its slot (0:
none); ``wake_s`` seconds for ``/wake_up`` to answer; and, from the command line,
``--startup-s``: seconds before the port opens, as a real server loads its weights first.
Without ``decode_tps`` each token takes ``token_s``.

Errors as vLLM writes them: ``{"error": {"message", "type", "param", "code"}}``. Prompt
tokens are counted as whitespace-separated words; generated tokens are words from the
shipped list, the same for the same prompt; ``max_tokens`` defaults to 16.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from aiohttp import web

from vespid.benchmarks.words import preload_words
from vespid.testing._common import Engine, serve_main, token_texts

__all__ = ["VLLMStandIn", "main"]

DEFAULT_MAX_TOKENS: Final = 16
_ids = itertools.count(1)


class _Invalid(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _error(message: str, status: int) -> web.Response:
    kind = "BadRequestError" if status == 400 else "NotFoundError"
    body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
    return web.json_response(body, status=status)


def _sse(event: Any) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


@dataclass
class VLLMStandIn:
    """vLLM's API server and engine, without the model."""

    model: str = "vespid/vllm-stand-in"
    sleep_mode: bool = True
    slots: int = 8
    token_s: float = 0.001
    decode_tps: float = 0.0  # above 0: tokens/s of a sequence decoding alone (else token_s)
    decode_slowdown: float = 0.0  # with k sequences in slots, each at decode_tps/(1+s(k-1))
    prefill_tps: float = 0.0  # above 0: prompt tokens/s, in the slot before the first token
    wake_s: float = 0.0  # seconds /wake_up takes (weights back from CPU memory)
    sleep_level: int = 0  # 0: awake
    sleeps: int = 0
    wakes: int = 0
    requests_while_asleep: int = 0
    engine: Engine = field(init=False)
    _awake: asyncio.Event = field(init=False)
    _idle: asyncio.Event = field(init=False)  # set while no sequence runs
    _aborted: int = 0  # bumped by /sleep?mode=abort: running sequences end
    _running: int = 0
    _in_slots: int = 0  # sequences holding a slot (prefilling or decoding): the batch

    def __post_init__(self) -> None:
        self.engine = Engine(self.slots, self.token_s)
        self._awake = asyncio.Event()
        self._awake.set()
        self._idle = asyncio.Event()
        self._idle.set()

    def app(self) -> web.Application:
        app = web.Application()
        app.on_startup.append(lambda _: preload_words())
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        if self.sleep_mode:
            app.router.add_post("/sleep", self._sleep)
            app.router.add_post("/wake_up", self._wake_up)
            app.router.add_get("/is_sleeping", self._is_sleeping)
        return app

    # -- generation ----------------------------------------------------------

    async def _body(self, request: web.Request, key: str) -> dict[str, Any]:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            raise _Invalid(f"JSON decode error: {exc}") from None
        if not isinstance(body, dict) or key not in body:
            raise _Invalid(f"Field required: {key}")
        max_tokens = body.get("max_tokens", DEFAULT_MAX_TOKENS)
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise _Invalid("max_tokens must be at least 1")
        return body

    async def _tokens(self, seed: str, count: int) -> tuple[list[str], str]:
        """Generate; the pieces and the finish reason ("abort" when put to sleep)."""
        if not self._awake.is_set():
            self.requests_while_asleep += 1
            await self._awake.wait()
        aborted_at = self._aborted
        pieces: list[str] = []
        self._running += 1
        self._idle.clear()
        try:
            async with self.engine.slots:
                self._in_slots += 1
                try:
                    await self._prefill(seed)
                    loop = asyncio.get_running_loop()
                    due = loop.time()
                    for _, piece in token_texts(seed, count):
                        if self._aborted != aborted_at:
                            return pieces, "abort"
                        due = await self._step(loop, due)
                        pieces.append(piece)
                finally:
                    self._in_slots -= 1
        finally:
            self._running -= 1
            if not self._running:
                self._idle.set()
        return pieces, "length"

    async def _prefill(self, prompt: str) -> None:
        if self.prefill_tps > 0:
            await asyncio.sleep(len(prompt.split()) / self.prefill_tps)

    async def _step(self, loop: asyncio.AbstractEventLoop, due: float) -> float:
        """One token; with ``decode_tps``, at the batch's current rate, kept on a schedule
        (``due``: when the last token was due) so that timer slack does not add up: a late
        token is followed by quicker ones until the rate is made up."""
        if self.decode_tps <= 0:
            await self.engine.step()
            return due
        slowdown = 1 + self.decode_slowdown * max(0, self._in_slots - 1)
        due += slowdown / self.decode_tps
        await asyncio.sleep(max(0.0, due - loop.time()))
        return due

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._body(request, "prompt")
        except _Invalid as exc:
            return _error(str(exc), exc.status)
        prompt = str(body["prompt"])
        return await self._answer(request, body, prompt, chat=False)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._body(request, "messages")
        except _Invalid as exc:
            return _error(str(exc), exc.status)
        prompt = " ".join(
            str(m.get("content", "")) for m in body["messages"] if isinstance(m, dict)
        )
        return await self._answer(request, body, prompt, chat=True)

    async def _answer(
        self, request: web.Request, body: dict[str, Any], prompt: str, *, chat: bool
    ) -> web.StreamResponse:
        max_tokens = body.get("max_tokens", DEFAULT_MAX_TOKENS)
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{next(_ids):032x}"
        head = {
            "id": ident,
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": self.model,
        }
        if body.get("stream"):
            return await self._stream(request, head, prompt, max_tokens, chat=chat)
        pieces, reason = await self._tokens(prompt, max_tokens)
        text = "".join(pieces)
        choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": reason}
        if chat:
            choice["message"] = {"role": "assistant", "content": text, "tool_calls": []}
        else:
            choice["text"] = text
        choice["stop_reason"] = None
        used = len(prompt.split())
        usage = {
            "prompt_tokens": used,
            "total_tokens": used + len(pieces),
            "completion_tokens": len(pieces),
            "prompt_tokens_details": None,
        }
        return web.json_response({**head, "choices": [choice], "usage": usage})

    async def _stream(
        self, request: web.Request, head: dict[str, Any], prompt: str, count: int, *, chat: bool
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await resp.prepare(request)
        chunk = {**head, "object": "chat.completion.chunk" if chat else "text_completion"}
        if chat:
            await resp.write(
                _sse({**chunk, "choices": [_delta({"role": "assistant", "content": ""})]})
            )
        pieces, reason = await self._tokens(prompt, count)
        for piece in pieces:
            choice = _delta({"content": piece}) if chat else _text(piece)
            await resp.write(_sse({**chunk, "choices": [choice]}))
        last = _delta({"content": ""}) if chat else _text("")
        await resp.write(_sse({**chunk, "choices": [{**last, "finish_reason": reason}]}))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def _models(self, request: web.Request) -> web.Response:
        card = {"id": self.model, "object": "model", "owned_by": "vllm", "root": self.model}
        return web.json_response({"object": "list", "data": [card]})

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    # -- sleep mode ----------------------------------------------------------

    async def _sleep(self, request: web.Request) -> web.Response:
        level = int(request.query.get("level", "1"))  # vLLM's int(): a bad value is a 500
        mode = request.query.get("mode", "abort")
        if mode == "wait":
            await self._idle.wait()
        else:
            self._aborted += 1
        self._awake.clear()
        self.sleep_level = level
        self.sleeps += 1
        return web.Response(status=200)

    async def _wake_up(self, request: web.Request) -> web.Response:
        if self.wake_s > 0:
            await asyncio.sleep(self.wake_s)
        self.sleep_level = 0
        self.wakes += 1
        self._awake.set()
        return web.Response(status=200)

    async def _is_sleeping(self, request: web.Request) -> web.Response:
        return web.json_response({"is_sleeping": not self._awake.is_set()})


def _delta(delta: dict[str, Any]) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}


def _text(piece: str) -> dict[str, Any]:
    return {"index": 0, "text": piece, "logprobs": None, "finish_reason": None, "stop_reason": None}


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--slots", type=int, default=8, help="sequences at once")
    parser.add_argument("--decode-tps", type=float, default=0.0, help="tokens/s of one alone")
    parser.add_argument("--decode-slowdown", type=float, default=0.0, help="per extra sequence")
    parser.add_argument("--prefill-tps", type=float, default=0.0, help="prompt tokens/s")
    parser.add_argument("--wake-s", type=float, default=0.0, help="seconds /wake_up takes")
    parser.add_argument("--startup-s", type=float, default=0.0, help="seconds before listening")


def _stand_in(args: argparse.Namespace) -> web.Application:
    if args.startup_s > 0:  # loading weights: the port is not open yet
        time.sleep(args.startup_s)
    return VLLMStandIn(
        slots=args.slots, decode_tps=args.decode_tps, decode_slowdown=args.decode_slowdown,
        prefill_tps=args.prefill_tps, wake_s=args.wake_s,
    ).app()  # fmt: skip


def main() -> None:
    serve_main("vllm", 8000, _stand_in, _options)


if __name__ == "__main__":
    main()
