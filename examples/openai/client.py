"""Call an OpenAI-compatible model server (llama.cpp here) through a vespid worker.

``python -m examples.openai.client http://127.0.0.1:3000 "Once upon a time"`` streams a
completion through an unsecured (development) worker; behind a router, ``auth_data`` is
what the router's ``/route/`` answered (``vespid call`` does all of it).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import aiohttp
import orjson


def dev_auth(cost: float, endpoint: str) -> dict[str, Any]:
    """auth_data for an UNSECURED worker: nothing is checked but the fields' presence."""
    return {
        "cost": cost,
        "endpoint": endpoint,
        "reqnum": 0,
        "request_idx": 0,
        "signature": "",
        "url": "",
    }


async def complete(worker_url: str, prompt: str, max_tokens: int = 16) -> list[str]:
    """Stream a completion; the text pieces as they arrive. Workload (cost) = max_tokens."""
    body = {
        "auth_data": dev_auth(max_tokens, "/v1/completions"),
        "payload": {"prompt": prompt, "max_tokens": max_tokens, "stream": True},
    }
    pieces: list[str] = []
    async with (
        aiohttp.ClientSession() as http,
        http.post(worker_url + "/v1/completions", json=body) as resp,
    ):
        resp.raise_for_status()
        async for line in resp.content:
            data = line.strip().removeprefix(b"data:").strip()
            if not data or data == b"[DONE]":
                continue
            for choice in orjson.loads(data).get("choices", []):
                pieces.append(choice.get("text") or "")
    return pieces


if __name__ == "__main__":
    print("".join(asyncio.run(complete(sys.argv[1], sys.argv[2]))))
