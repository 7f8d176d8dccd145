"""The demo: a real model server, a vespid worker in front of it, a streamed completion.

Starts llama.cpp's server with the bundled Gemma 3 270M model, starts
``vespid worker`` before it with a freshly generated router key (so signatures are
checked for real), waits for the worker to be ready, then streams a completion
through the worker and prints the text as it arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from vespid.protocol.signing import Signer, generate_private_key, public_key_pem
from vespid.servers.process import ChildProcess, free_port, wait_http

__all__ = ["iter_sse_text", "run_demo"]

PROMPT = "The three most useful things to pack for a week of hiking are"


async def iter_sse_text(resp: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """Text pieces of an OpenAI completions SSE stream, as they arrive."""
    async for raw in resp.content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            return
        event: Any = orjson.loads(data)
        for choice in event.get("choices", []):
            text = choice.get("text") or (choice.get("delta") or {}).get("content")
            if text:
                yield text


async def run_demo(
    *, out: Callable[[str], None] = print, max_tokens: int = 64, workdir: Path | None = None
) -> str:
    """Run the whole demo; returns the completion text."""
    with tempfile.TemporaryDirectory(prefix="vespid-demo-") as tmp:
        base = workdir or Path(tmp)
        key = generate_private_key()
        key_file = base / "router.pub.pem"
        await asyncio.to_thread(key_file.write_bytes, public_key_pem(key))
        model_port, worker_port = free_port(), free_port()
        model = ChildProcess.python(
            "llama.cpp server",
            "-m",
            "vespid.servers.llamacpp",
            "--model",
            "gemma",
            "--port",
            str(model_port),
            log_path=base / "model.log",
        )
        worker = ChildProcess.python(
            "vespid worker",
            "-m",
            "vespid.worker",
            env={
                "BACKEND_URL": f"http://127.0.0.1:{model_port}",
                "HEALTHCHECK_ENDPOINT": "/health",
                "WORKER_PORT": str(worker_port),
                "PUBLIC_IPADDR": "127.0.0.1",
                "VESPID_PUBLIC_KEY_FILE": str(key_file),
                "MODEL_NAME": "gemma-3-270m-q4_k_m",
            },
            log_path=base / "worker.log",
        )
        started = time.monotonic()
        try:
            out("starting llama.cpp (Gemma 3 270M) and a vespid worker in front of it\n")
            await model.start()
            await worker.start()
            await wait_http(f"http://127.0.0.1:{model_port}/health", timeout_s=120, proc=model)
            out(
                f"model server up in {time.monotonic() - started:.1f} s; the worker benchmarks it\n"
            )
            await _wait_worker_ready(worker_port, worker)
            out(
                f"worker ready in {time.monotonic() - started:.1f} s; "
                "streaming a completion through it:\n\n"
            )
            url = f"http://127.0.0.1:{worker_port}"
            auth = Signer(key).auth_data(
                url=url, cost=max_tokens, endpoint="/v1/completions", reqnum=1, request_idx=1
            )
            body = {
                "auth_data": auth,
                "payload": {"prompt": PROMPT, "max_tokens": max_tokens, "stream": True},
            }
            pieces = [PROMPT]
            out(PROMPT)
            async with (
                aiohttp.ClientSession() as session,
                session.post(url + "/v1/completions", json=body) as resp,
            ):
                if resp.status != 200:
                    raise RuntimeError(f"worker answered {resp.status}: {await resp.text()}")
                async for text in iter_sse_text(resp):
                    pieces.append(text)
                    out(text)
            out("\n")
            return "".join(pieces)
        finally:
            await worker.stop()
            await model.stop()


async def _wait_worker_ready(port: int, worker: ChildProcess) -> None:
    async with aiohttp.ClientSession() as session, asyncio.timeout(180):
        while True:
            if worker.returncode is not None:
                raise RuntimeError(f"the worker exited with {worker.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    if b"vespid_worker_ready 1.0" in await resp.read():
                        return
            await asyncio.sleep(0.1)
