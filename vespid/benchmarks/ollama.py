"""Benchmark for Ollama's native API (``/api/generate``).

``BENCHMARK=vespid.benchmarks.ollama:benchmark``. Uses the first model ``/api/tags``
lists (or ``model=``), sends ``POST /api/generate`` with ``"stream": false`` and
``options.num_predict``; workload is tokens generated (``eval_count``, else
``num_predict``), so clients should send ``cost = num_predict``. Ollama's OpenAI mode
(``/v1/...``) uses ``vespid.benchmarks.openai`` instead. Ollama truncates a prompt longer
than its context rather than refusing it, so no fitting happens here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from vespid.benchmarks.ramp import read_json
from vespid.benchmarks.text import TextBenchmark, refusal
from vespid.errors import BackendError

__all__ = ["DEFAULT", "OllamaBenchmark", "benchmark"]

HINT: Final = "is BACKEND_URL an Ollama server?"


@dataclass(frozen=True, slots=True)
class OllamaBenchmark(TextBenchmark):
    """``POST /api/generate`` without streaming, counting ``eval_count``."""

    name = "ollama"

    async def pick_model(self, backend_url: str, session: aiohttp.ClientSession) -> str | None:
        what = f"GET {backend_url}/api/tags"
        async with session.get(backend_url + "/api/tags") as resp:
            data = await read_json(resp, what, HINT)
        models = data.get("models") if isinstance(data, dict) else None
        if not isinstance(models, list) or not models or not isinstance(models[0], dict):
            raise BackendError(
                f"{what}: Ollama has no model to benchmark; pull one (ollama pull NAME) "
                "or name it in OllamaBenchmark(model=...)"
            )
        return str(models[0].get("name") or models[0].get("model"))

    def body(self, text: str, model: str | None) -> dict[str, Any]:
        return {
            "model": model,
            "prompt": text,
            "stream": False,
            "options": {"num_predict": self.max_tokens, "temperature": self.temperature},
        }

    async def send(
        self, backend_url: str, session: aiohttp.ClientSession, text: str, model: str | None
    ) -> float:
        what = f"POST {backend_url}/api/generate"
        async with session.post(backend_url + "/api/generate", json=self.body(text, model)) as r:
            if 400 <= r.status < 500:
                raise await refusal(r, what, HINT)
            data = await read_json(r, what, HINT)
        if not isinstance(data, dict) or data.get("done") is not True:
            raise BackendError(f"{what} answered without done: true: {str(data)[:200]}")
        tokens = data.get("eval_count")
        if isinstance(tokens, int) and not isinstance(tokens, bool):
            return float(tokens)
        return float(self.max_tokens)


DEFAULT: Final = OllamaBenchmark()


async def benchmark(backend_url: str, session: aiohttp.ClientSession) -> float:
    """``BENCHMARK=vespid.benchmarks.ollama:benchmark``: tokens generated per second."""
    return await DEFAULT(backend_url, session)
