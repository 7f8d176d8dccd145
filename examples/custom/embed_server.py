"""A custom model API with no built-in support: text embeddings.

``POST /embed`` with ``{"texts": [str, ...]}`` answers ``{"embeddings": [[float] * 8, ...],
"tokens": n}``, where n counts the words embedded; ``GET /health`` answers 200. It
embeds up to ``slots`` requests at once, at ``word_s`` seconds a word.

Usage: ``python -m examples.custom.embed_server --port 9000``
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib

from aiohttp import web

SLOTS_KEY = web.AppKey("slots", asyncio.Semaphore)
WORD_S_KEY = web.AppKey("word_s", float)


def _vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 255, 4) for b in digest[:8]]


async def embed(request: web.Request) -> web.Response:
    body = await request.json()
    texts = body.get("texts") if isinstance(body, dict) else None
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        return web.json_response({"detail": "texts must be a list of strings"}, status=422)
    words = sum(len(t.split()) for t in texts)
    async with request.app[SLOTS_KEY]:
        await asyncio.sleep(words * request.app[WORD_S_KEY])
    return web.json_response({"embeddings": [_vector(t) for t in texts], "tokens": words})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def build_app(*, slots: int = 2, word_s: float = 0.0001) -> web.Application:
    app = web.Application()
    app[SLOTS_KEY] = asyncio.Semaphore(slots)
    app[WORD_S_KEY] = word_s
    app.router.add_post("/embed", embed)
    app.router.add_get("/health", health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.custom.embed_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    web.run_app(build_app(), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
