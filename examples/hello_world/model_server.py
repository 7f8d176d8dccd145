"""The hello_world model server: a tiny "LLM" on port 5001 that needs no model.

``POST /generate`` with ``{"prompt": str, "max_response_tokens": int | null}`` answers
``{"response": str, "tokens": n}``; ``POST /generate_stream`` streams the same response
one token (word) at a time as plain text chunks; ``GET /healthcheck`` answers 200. With
``--log PATH`` it writes ``server has started`` there once it listens, which is the line
the worker waits for (``LogAction.ModelLoaded``).

Usage: ``python -m examples.hello_world.model_server --port 5001 --log /tmp/model.log``
"""

from __future__ import annotations

import argparse
import asyncio
import random
from pathlib import Path

from aiohttp import web

from vespid.benchmarks.words import load_words, preload_words

TOKEN_S_KEY = web.AppKey("token_s", float)  # seconds per generated token
SLOTS_KEY = web.AppKey("slots", asyncio.Semaphore)  # requests generated at once


def _tokens(prompt: str, count: int) -> list[str]:
    rng = random.Random(prompt)
    return rng.choices(load_words(), k=count)


async def _read(request: web.Request) -> tuple[str, int] | web.Response:
    body = await request.json()
    prompt = body.get("prompt") if isinstance(body, dict) else None
    if not isinstance(prompt, str):
        return web.json_response({"error": "prompt must be a string"}, status=400)
    count = body.get("max_response_tokens") or 16
    return prompt, int(count)


async def generate(request: web.Request) -> web.Response:
    parsed = await _read(request)
    if isinstance(parsed, web.Response):
        return parsed
    prompt, count = parsed
    async with request.app[SLOTS_KEY]:
        await asyncio.sleep(request.app[TOKEN_S_KEY] * count)
    return web.json_response({"response": " ".join(_tokens(prompt, count)), "tokens": count})


async def generate_stream(request: web.Request) -> web.StreamResponse:
    parsed = await _read(request)
    if isinstance(parsed, web.Response):
        return parsed
    prompt, count = parsed
    resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await resp.prepare(request)
    async with request.app[SLOTS_KEY]:
        for word in _tokens(prompt, count):
            await asyncio.sleep(request.app[TOKEN_S_KEY])
            await resp.write(word.encode() + b" ")
    await resp.write_eof()
    return resp


async def healthcheck(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def build_app(
    log: Path | None = None, *, token_s: float = 0.002, slots: int = 4
) -> web.Application:
    app = web.Application()
    app[TOKEN_S_KEY] = token_s
    app[SLOTS_KEY] = asyncio.Semaphore(slots)
    app.router.add_post("/generate", generate)
    app.router.add_post("/generate_stream", generate_stream)
    app.router.add_get("/healthcheck", healthcheck)

    async def started(_: web.Application) -> None:
        await preload_words()
        if log is not None:
            await asyncio.to_thread(_append, log, "server has started\n")

    app.on_startup.append(started)
    return app


def _append(path: Path, line: str) -> None:
    with path.open("a") as f:
        f.write(line)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.hello_world.model_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--log", type=Path, default=None, help="model log to write to")
    parser.add_argument("--token-ms", type=float, default=2.0, help="milliseconds per token")
    parser.add_argument("--slots", type=int, default=4, help="requests generated at once")
    args = parser.parse_args()
    app = build_app(args.log, token_s=args.token_ms / 1000, slots=args.slots)
    web.run_app(app, host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
