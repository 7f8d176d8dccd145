"""Call an OpenAI-compatible model server (llama.cpp here) through a vespid worker.

``python -m examples.openai.client http://127.0.0.1:3000 "Once upon a time"`` streams a
completion through an unsecured (development) worker; behind a router, ``auth_data`` is
what the router's ``/route/`` answered (``vespid call`` does all of it).

Run right after the worker, it finds the worker still loading or benchmarking (the
worker answers 503 ``not_ready`` with what it waits for): it says so in one line and
asks again until the worker is ready, or gives up after ``--ready-timeout-s`` with one
line and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import aiohttp
import orjson

READY_POLL_S = 1.0


class NotReady(Exception):
    """The worker was still not ready when the client stopped waiting."""


def dev_auth(cost: float, endpoint: str) -> dict[str, Any]:
    """auth_data for an UNSECURED worker, which needs none of it but the workload (cost)."""
    return {"cost": cost, "endpoint": endpoint}


async def _not_ready(resp: aiohttp.ClientResponse) -> str | None:
    """The worker's words when it answered 503 not_ready; None for any other answer."""
    if resp.status != 503:
        return None
    try:
        body = await resp.json()
    except (aiohttp.ContentTypeError, ValueError):
        return None
    if not isinstance(body, dict) or body.get("code") != "not_ready":
        return None
    return str(body.get("error", "not ready"))


async def _read_stream(resp: aiohttp.ClientResponse) -> list[str]:
    pieces: list[str] = []
    async for line in resp.content:
        data = line.strip().removeprefix(b"data:").strip()
        if not data or data == b"[DONE]":
            continue
        for choice in orjson.loads(data).get("choices", []):
            pieces.append(choice.get("text") or "")
    return pieces


async def complete(
    worker_url: str, prompt: str, max_tokens: int = 16, ready_timeout_s: float = 600.0
) -> list[str]:
    """Stream a completion; the text pieces as they arrive. Workload (cost) = max_tokens.

    While the worker is not ready, waits (saying so once per new reason on stderr) up to
    ``ready_timeout_s``; NotReady after it.
    """
    body = {
        "auth_data": dev_auth(max_tokens, "/v1/completions"),
        "payload": {"prompt": prompt, "max_tokens": max_tokens, "stream": True},
    }
    deadline = time.monotonic() + ready_timeout_s
    said = ""
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.post(worker_url + "/v1/completions", json=body) as resp:
                reason = await _not_ready(resp)
                if reason is None:
                    resp.raise_for_status()
                    return await _read_stream(resp)
            if time.monotonic() >= deadline:
                raise NotReady(f"{reason} (gave up after {ready_timeout_s:g} s)")
            if reason.split(" (")[0] != said:
                said = reason.split(" (")[0]
                print(f"{worker_url}: {reason}; waiting", file=sys.stderr)
            await asyncio.sleep(READY_POLL_S)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("worker_url")
    parser.add_argument("prompt")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--ready-timeout-s", type=float, default=600.0)
    args = parser.parse_args(argv)
    try:
        pieces = asyncio.run(
            complete(args.worker_url, args.prompt, args.max_tokens, args.ready_timeout_s)
        )
    except NotReady as exc:
        print(f"the worker is still not ready: {exc}", file=sys.stderr)
        return 1
    except aiohttp.ClientResponseError as exc:
        print(f"the worker answered {exc.status} {exc.message}", file=sys.stderr)
        return 1
    except aiohttp.ClientError as exc:
        print(f"cannot reach the worker at {args.worker_url}: {exc}", file=sys.stderr)
        return 1
    print("".join(pieces))
    return 0


if __name__ == "__main__":
    sys.exit(main())
