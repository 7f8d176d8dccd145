"""A stand-in for Ollama's native API, on its exact wire format.

Routes: ``POST /api/generate`` and ``POST /api/chat`` (streamed as NDJSON by default:
one JSON object per line, ``application/x-ndjson``; ``"stream": false`` gives one JSON
object), ``GET /api/tags``, ``GET /api/version`` and ``GET /`` ("Ollama is running").

Streamed lines as Ollama writes them: ``{"model", "created_at", "response": "...",
"done": false}`` (``/api/chat``: ``"message": {"role": "assistant", "content": "..."}``),
then a last line with ``"done": true, "done_reason": "length"|"stop"`` and the counters
``total_duration``, ``load_duration``, ``prompt_eval_count``, ``prompt_eval_duration``,
``eval_count``, ``eval_duration`` (nanoseconds), plus ``context`` for ``/api/generate``.
Errors are ``{"error": "..."}``: 400 for a missing model or a bad body, 404 for a model
that is not pulled. ``options.num_predict`` caps the tokens (default 128 here); an empty
prompt only loads the model (``"done_reason": "load"``).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from aiohttp import web

from vespid.benchmarks.words import preload_words
from vespid.testing._common import Engine, serve_main, token_texts

__all__ = ["OllamaStandIn", "main"]

DEFAULT_NUM_PREDICT: Final = 128


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _error(message: str, status: int) -> web.Response:
    return web.json_response({"error": message}, status=status)


@dataclass
class OllamaStandIn:
    """An Ollama server with some models pulled, without the models."""

    models: list[str] = field(default_factory=lambda: ["stand-in:latest"])
    slots: int = 4
    token_s: float = 0.001
    requests: list[dict[str, Any]] = field(default_factory=list)
    engine: Engine = field(init=False)

    def __post_init__(self) -> None:
        self.engine = Engine(self.slots, self.token_s)

    def app(self) -> web.Application:
        app = web.Application()
        app.on_startup.append(lambda _: preload_words())
        app.router.add_get("/", self._root)
        app.router.add_post("/api/generate", self._generate)
        app.router.add_post("/api/chat", self._chat)
        app.router.add_get("/api/tags", self._tags)
        app.router.add_get("/api/version", self._version)
        return app

    def _model(self, name: str) -> str | None:
        if name in self.models:
            return name
        if f"{name}:latest" in self.models:
            return f"{name}:latest"
        return None

    async def _parse(self, request: web.Request) -> dict[str, Any] | web.Response:
        try:
            body: Any = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return _error(f"invalid character in request body: {exc}", 400)
        if not isinstance(body, dict):
            return _error("json: cannot unmarshal into Go value of type api.GenerateRequest", 400)
        if not body.get("model"):
            return _error("model is required", 400)
        model = self._model(str(body["model"]))
        if model is None:
            return _error(f"model '{body['model']}' not found", 404)
        body["model"] = model
        self.requests.append(body)
        return body

    async def _run(
        self, request: web.Request, body: dict[str, Any], text: str, *, chat: bool
    ) -> web.StreamResponse:
        started = time.monotonic_ns()
        options = body.get("options") or {}
        num_predict = options.get("num_predict")
        if not isinstance(num_predict, int) or num_predict < 0:
            num_predict = DEFAULT_NUM_PREDICT
        tokens = token_texts(f"{body['model']}|{text}|{options.get('seed')}", num_predict)
        prompt_count = max(1, len(text.split()))
        stream = body.get("stream", True) is not False

        def piece(content: str) -> dict[str, Any]:
            line: dict[str, Any] = {"model": body["model"], "created_at": _now()}
            if chat:
                line["message"] = {"role": "assistant", "content": content}
            else:
                line["response"] = content
            line["done"] = False
            return line

        def final(content: str) -> dict[str, Any]:
            total = time.monotonic_ns() - started
            line = piece(content)
            line.update(
                done=True,
                done_reason="length" if len(tokens) == num_predict else "stop",
                total_duration=total,
                load_duration=1000,
                prompt_eval_count=prompt_count,
                prompt_eval_duration=total // 10,
                eval_count=len(tokens),
                eval_duration=total - total // 10,
            )
            if not chat:
                line["context"] = [t for t, _ in tokens][:64]
            return line

        if not stream:
            async with self.engine.slots:
                for _ in tokens:
                    await self.engine.step()
            return web.json_response(final("".join(p for _, p in tokens)))
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        async with self.engine.slots:
            for _, text_piece in tokens:
                await self.engine.step()
                await resp.write(orjson.dumps(piece(text_piece)) + b"\n")
        await resp.write(orjson.dumps(final("")) + b"\n")
        await resp.write_eof()
        return resp

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        body = await self._parse(request)
        if isinstance(body, web.Response):
            return body
        prompt = body.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            return _error("json: cannot unmarshal prompt into Go value of type string", 400)
        if not prompt:
            return web.json_response(
                {
                    "model": body["model"],
                    "created_at": _now(),
                    "response": "",
                    "done": True,
                    "done_reason": "load",
                }
            )
        return await self._run(request, body, prompt, chat=False)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._parse(request)
        if isinstance(body, web.Response):
            return body
        messages = body.get("messages")
        if messages is None:
            messages = []
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and isinstance(m.get("content", ""), str) for m in messages
        ):
            return _error("json: cannot unmarshal messages into []api.Message", 400)
        text = " ".join(str(m.get("content", "")) for m in messages)
        return await self._run(request, body, text, chat=True)

    async def _tags(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "models": [
                    {
                        "name": name,
                        "model": name,
                        "modified_at": "2026-01-01T00:00:00Z",
                        "size": 1_000_000,
                        "digest": hashlib.sha256(name.encode()).hexdigest(),
                        "details": {
                            "format": "gguf",
                            "family": "llama",
                            "parameter_size": "1B",
                            "quantization_level": "Q4_K_M",
                        },
                    }
                    for name in self.models
                ]
            }
        )

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "0.0.0-stand-in"})

    async def _root(self, request: web.Request) -> web.Response:
        return web.Response(text="Ollama is running")


def main() -> None:
    serve_main("ollama", 11434, lambda _: OllamaStandIn().app())


if __name__ == "__main__":
    main()
