"""A stand-in for Hugging Face Text Generation Inference (TGI), on its exact wire format.

Routes: ``POST /generate`` (one JSON object), ``POST /generate_stream`` (SSE), ``POST /``
(either, by the body's ``"stream"``; the non-streaming answer is a JSON *list* of one
object, which is what the ``text-generation`` client reads), ``GET /info``, ``GET
/health`` and ``GET /metrics``.

Bodies as TGI writes them:

- request: ``{"inputs": str, "parameters": {"max_new_tokens", "details", "decoder_input_details",
  "return_full_text", "stop", "seed", "do_sample", "temperature", "top_p", ...}, "stream"?}``
- answer: ``{"generated_text": str, "details": {"finish_reason", "generated_tokens", "seed",
  "prefill": [{"id", "text", "logprob"}], "tokens": [{"id", "text", "logprob", "special"}]}}``
  (``details`` only when asked for)
- stream: ``data:{"index":1,"token":{"id":..,"text":..,"logprob":..,"special":false},
  "generated_text":null,"details":null}`` per token, then the last event carries
  ``generated_text`` and (when asked) ``details`` ``{"finish_reason", "generated_tokens",
  "seed", "input_length"}``
- errors: ``{"error": "Input validation error: ...", "error_type": "validation"}`` with 422;
  ``"overloaded"`` with 429.

Input tokens are counted as whitespace-separated words; generated tokens are words from
the shipped list, the same for the same inputs and seed. ``max_new_tokens`` defaults to
100 here when absent.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from aiohttp import web

from vespid.benchmarks.words import preload_words
from vespid.testing._common import Engine, serve_main, token_texts

__all__ = ["TGIStandIn", "main"]

DEFAULT_MAX_NEW_TOKENS: Final = 100
BOS: Final = {"id": 1, "text": "<s>", "logprob": None}


class _Invalid(Exception):
    def __init__(self, message: str, status: int = 422, error_type: str = "validation") -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type


def _error(message: str, status: int, error_type: str) -> web.Response:
    return web.json_response({"error": message, "error_type": error_type}, status=status)


@dataclass
class TGIStandIn:
    """TGI's router and one model, without the model."""

    model_id: str = "vespid/tgi-stand-in"
    max_input_tokens: int = 1024
    max_total_tokens: int = 2048
    max_concurrent_requests: int = 128
    slots: int = 4
    token_s: float = 0.001
    requests: list[dict[str, Any]] = field(default_factory=list)
    engine: Engine = field(init=False)
    active: int = 0

    def __post_init__(self) -> None:
        self.engine = Engine(self.slots, self.token_s)

    def app(self) -> web.Application:
        app = web.Application()
        app.on_startup.append(lambda _: preload_words())
        app.router.add_post("/", self._compat)
        app.router.add_post("/generate", self._generate)
        app.router.add_post("/generate_stream", self._generate_stream)
        app.router.add_get("/info", self._info)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        return app

    # -- validation --------------------------------------------------------

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body: Any = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            raise _Invalid(f"Failed to parse the request body as JSON: {exc}") from None
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), str):
            raise _Invalid(
                "Failed to deserialize the JSON body into the target type: missing field `inputs`"
            )
        params = body.get("parameters") or {}
        if not isinstance(params, dict):
            raise _Invalid("Failed to deserialize the JSON body: `parameters` must be an object")
        self.requests.append(body)
        return body

    def _validate(self, body: dict[str, Any]) -> tuple[str, dict[str, Any], int, int]:
        inputs: str = body["inputs"]
        params: dict[str, Any] = body.get("parameters") or {}
        if not inputs.strip():
            raise _Invalid("Input validation error: `inputs` cannot be empty")
        for name in ("temperature", "repetition_penalty", "top_k"):
            value = params.get(name)
            if value is not None and not value > 0:
                raise _Invalid(f"Input validation error: `{name}` must be strictly positive")
        top_p = params.get("top_p")
        if top_p is not None and not 0.0 < top_p < 1.0:
            raise _Invalid("Input validation error: `top_p` must be > 0.0 and < 1.0")
        max_new = params.get("max_new_tokens")
        max_new = DEFAULT_MAX_NEW_TOKENS if max_new is None else max_new
        if not isinstance(max_new, int) or max_new <= 0:
            raise _Invalid("Input validation error: `max_new_tokens` must be strictly positive")
        input_length = len(inputs.split())
        if input_length > self.max_input_tokens:
            raise _Invalid(
                f"Input validation error: `inputs` must have less than {self.max_input_tokens} "
                f"tokens. Given: {input_length}"
            )
        if input_length + max_new > self.max_total_tokens:
            raise _Invalid(
                f"Input validation error: `inputs` tokens + `max_new_tokens` must be <= "
                f"{self.max_total_tokens}. Given: {input_length} `inputs` tokens and "
                f"{max_new} `max_new_tokens`"
            )
        return inputs, params, max_new, input_length

    # -- generation --------------------------------------------------------

    def _plan(
        self, inputs: str, params: dict[str, Any], max_new: int
    ) -> tuple[list[tuple[int, str]], str, int | None]:
        """The tokens to emit, the finish reason, and the seed TGI reports."""
        seed = params.get("seed")
        if params.get("do_sample") and seed is None:
            seed = zlib.crc32(inputs.encode())
        tokens = token_texts(f"{inputs}|{seed}", max_new)
        for stop in params.get("stop") or []:
            text = ""
            for i, (_, piece) in enumerate(tokens):
                text += piece
                if stop and text.endswith(stop):
                    return tokens[: i + 1], "stop_sequence", seed
        return tokens, "length", seed

    @staticmethod
    def _token(token_id: int, text: str) -> dict[str, Any]:
        return {
            "id": token_id,
            "text": text,
            "logprob": round(-0.1 - (token_id % 7) / 10, 4),
            "special": False,
        }

    def _admit(self) -> None:
        if self.active >= self.max_concurrent_requests:
            raise _Invalid("Model is overloaded", status=429, error_type="overloaded")

    async def _run(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs, params, max_new, _ = self._validate(body)
        self._admit()
        tokens, reason, seed = self._plan(inputs, params, max_new)
        self.active += 1
        try:
            async with self.engine.slots:
                for _ in tokens:
                    await self.engine.step()
        finally:
            self.active -= 1
        text = "".join(piece for _, piece in tokens)
        if params.get("return_full_text"):
            text = inputs + text
        answer: dict[str, Any] = {"generated_text": text}
        if params.get("details"):
            prefill: list[dict[str, Any]] = []
            if params.get("decoder_input_details"):
                prefill = [BOS] + [
                    {"id": 2000 + i, "text": word, "logprob": -1.5 if i else None}
                    for i, word in enumerate(inputs.split())
                ]
            answer["details"] = {
                "finish_reason": reason,
                "generated_tokens": len(tokens),
                "seed": seed,
                "prefill": prefill,
                "tokens": [self._token(i, t) for i, t in tokens],
            }
        return answer

    async def _answer(self, request: web.Request, *, as_list: bool) -> web.Response:
        try:
            answer = await self._run(await self._body(request))
        except _Invalid as exc:
            return _error(str(exc), exc.status, exc.error_type)
        return web.json_response([answer] if as_list else answer)

    async def _stream(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        try:
            inputs, params, max_new, input_length = self._validate(body)
            self._admit()
        except _Invalid as exc:
            return _error(str(exc), exc.status, exc.error_type)
        tokens, reason, seed = self._plan(inputs, params, max_new)
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        self.active += 1
        try:
            async with self.engine.slots:
                text = ""
                for index, (token_id, piece) in enumerate(tokens, start=1):
                    await self.engine.step()
                    text += piece
                    last = index == len(tokens)
                    event: dict[str, Any] = {
                        "index": index,
                        "token": self._token(token_id, piece),
                        "generated_text": None,
                        "details": None,
                    }
                    if last:
                        event["generated_text"] = (
                            inputs + text if params.get("return_full_text") else text
                        )
                        if params.get("details"):
                            event["details"] = {
                                "finish_reason": reason,
                                "generated_tokens": len(tokens),
                                "seed": seed,
                                "input_length": input_length,
                            }
                    await resp.write(b"data:" + orjson.dumps(event) + b"\n\n")
        finally:
            self.active -= 1
        await resp.write_eof()
        return resp

    # -- routes ------------------------------------------------------------

    async def _generate(self, request: web.Request) -> web.Response:
        return await self._answer(request, as_list=False)

    async def _generate_stream(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._body(request)
        except _Invalid as exc:
            return _error(str(exc), exc.status, exc.error_type)
        return await self._stream(request, body)

    async def _compat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._body(request)
        except _Invalid as exc:
            return _error(str(exc), exc.status, exc.error_type)
        if body.get("stream"):
            return await self._stream(request, body)
        try:
            answer = await self._run(body)
        except _Invalid as exc:
            return _error(str(exc), exc.status, exc.error_type)
        return web.json_response([answer])

    async def _info(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "model_id": self.model_id,
                "model_sha": None,
                "model_dtype": "torch.float16",
                "model_device_type": "cpu",
                "model_pipeline_tag": "text-generation",
                "max_concurrent_requests": self.max_concurrent_requests,
                "max_best_of": 2,
                "max_stop_sequences": 4,
                "max_input_tokens": self.max_input_tokens,
                "max_total_tokens": self.max_total_tokens,
                "validation_workers": 2,
                "max_client_batch_size": 4,
                "router": "text-generation-router",
                "version": "stand-in",
                "sha": None,
                "docker_label": None,
            }
        )

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def _metrics(self, request: web.Request) -> web.Response:
        count = len(self.requests)
        return web.Response(
            text=f"# TYPE tgi_request_count counter\ntgi_request_count {count}\n",
            content_type="text/plain",
        )


def main() -> None:
    serve_main("tgi", 8080, lambda _: TGIStandIn().app())


if __name__ == "__main__":
    main()
