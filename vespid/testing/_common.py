"""What the stand-ins share: pseudo-tokens, a compute budget, and serving from a command line."""

from __future__ import annotations

import argparse
import asyncio
import random
import zlib
from collections.abc import Callable
from typing import Final

from aiohttp import web

from vespid.benchmarks.words import load_words

__all__ = ["Engine", "png", "serve_main", "token_texts"]

VOCAB_OFFSET: Final = 1000


def token_texts(seed: str | int, count: int) -> list[tuple[int, str]]:
    """``count`` (id, text) pseudo-tokens, the same for the same seed."""
    words = load_words()
    rng = random.Random(seed)
    out: list[tuple[int, str]] = []
    for _ in range(count):
        index = rng.randrange(len(words))
        out.append((VOCAB_OFFSET + index, " " + words[index]))
    return out


class Engine:
    """A model's compute: ``slots`` sequences at once, ``token_s`` per token for each."""

    def __init__(self, slots: int, token_s: float) -> None:
        self.slots = asyncio.Semaphore(slots)
        self.token_s = token_s
        self.waiting = 0

    async def step(self) -> None:
        """One decoding step of one sequence."""
        await asyncio.sleep(self.token_s)


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A solid-colour RGB PNG (8 bits per channel, no filter), with the standard library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    row = b"\x00" + bytes(rgb) * width
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x02\x00\x00\x00"
    pixels = zlib.compress(row * height, 6)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def serve_main(
    name: str,
    default_port: int,
    make_app: Callable[[argparse.Namespace], web.Application],
    options: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """``python -m vespid.testing.<name> [--host H] [--port P]`` and the stand-in's own
    ``options``: serve until interrupted."""
    parser = argparse.ArgumentParser(prog=f"python -m vespid.testing.{name}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    if options is not None:
        options(parser)
    args = parser.parse_args()
    app = make_app(args)
    print(f"{name} stand-in listening on http://{args.host}:{args.port}", flush=True)
    web.run_app(app, host=args.host, port=args.port, print=None)
