"""Benchmark for OpenAI-compatible servers: vLLM, llama.cpp, Ollama and TGI in OpenAI mode.

``BENCHMARK=vespid.benchmarks.openai:benchmark``. Workload is tokens generated: each
answer's ``usage.completion_tokens`` (``max_tokens`` when a server reports no usage), so
clients should send ``cost = max_tokens``. Prompts and the ramp are described in
``vespid.benchmarks.text`` and ``vespid.benchmarks.ramp``.

For other settings, make an instance and name it in BENCHMARK::

    # mybench.py
    from vespid.benchmarks.openai import OpenAIBenchmark
    benchmark = OpenAIBenchmark(max_tokens=128, chat=True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from vespid.benchmarks.ramp import read_json
from vespid.benchmarks.text import TextBenchmark, refusal
from vespid.errors import BackendError

__all__ = ["DEFAULT", "OpenAIBenchmark", "benchmark", "pick_model"]

HINT: Final = "is BACKEND_URL an OpenAI-compatible server?"


async def pick_model(backend_url: str, session: aiohttp.ClientSession) -> str | None:
    """The first model the server lists at /v1/models, if any."""
    async with session.get(f"{backend_url}/v1/models") as resp:
        if resp.status != 200:
            await resp.read()
            return None
        data: Any = await resp.json(content_type=None)
    models = data.get("data") if isinstance(data, dict) else None
    if isinstance(models, list) and models and isinstance(models[0], dict):
        model_id = models[0].get("id")
        return str(model_id) if model_id is not None else None
    return None


@dataclass(frozen=True, slots=True)
class OpenAIBenchmark(TextBenchmark):
    """``/v1/completions`` (or ``/v1/chat/completions`` with ``chat=True``)."""

    chat: bool = False

    name = "openai"

    @property
    def path(self) -> str:
        return "/v1/chat/completions" if self.chat else "/v1/completions"

    def body(self, text: str, model: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"max_tokens": self.max_tokens, "temperature": self.temperature}
        if self.chat:
            body["messages"] = [{"role": "user", "content": text}]
        else:
            body["prompt"] = text
        if model:
            body["model"] = model
        return body

    async def pick_model(self, backend_url: str, session: aiohttp.ClientSession) -> str | None:
        return await pick_model(backend_url, session)

    async def send(
        self, backend_url: str, session: aiohttp.ClientSession, text: str, model: str | None
    ) -> float:
        what = f"POST {backend_url}{self.path}"
        async with session.post(backend_url + self.path, json=self.body(text, model)) as resp:
            if 400 <= resp.status < 500:
                raise await refusal(resp, what, HINT)
            data = await read_json(resp, what, HINT)
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise BackendError(f"{what} answered without choices: {str(data)[:200]} ({HINT})")
        usage = data.get("usage")
        tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
        if isinstance(tokens, int | float) and not isinstance(tokens, bool):
            return float(tokens)
        return float(self.max_tokens)


DEFAULT: Final = OpenAIBenchmark()


async def benchmark(backend_url: str, session: aiohttp.ClientSession) -> float:
    """``BENCHMARK=vespid.benchmarks.openai:benchmark``: tokens generated per second."""
    return await DEFAULT(backend_url, session)
