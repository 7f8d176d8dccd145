"""Benchmark for Hugging Face Text Generation Inference on its native API.

``BENCHMARK=vespid.benchmarks.tgi:benchmark``. Sends ``POST /generate`` with
``{"inputs": prompt, "parameters": {"max_new_tokens", "do_sample", "temperature",
"details": true}}``; workload is tokens generated (``details.generated_tokens``, else
``max_new_tokens``), so clients should send ``cost = max_new_tokens``. TGI in OpenAI mode
(its ``/v1/chat/completions``) uses ``vespid.benchmarks.openai`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from vespid.benchmarks.ramp import read_json
from vespid.benchmarks.text import TextBenchmark, refusal
from vespid.errors import BackendError

__all__ = ["DEFAULT", "TGIBenchmark", "benchmark"]

HINT: Final = "is BACKEND_URL a Text Generation Inference server?"


@dataclass(frozen=True, slots=True)
class TGIBenchmark(TextBenchmark):
    """``POST /generate`` with details, counting generated tokens."""

    name = "tgi"

    def body(self, text: str) -> dict[str, Any]:
        return {
            "inputs": text,
            "parameters": {
                "max_new_tokens": self.max_tokens,
                "do_sample": True,
                "temperature": self.temperature,
                "details": True,
            },
        }

    async def send(
        self, backend_url: str, session: aiohttp.ClientSession, text: str, model: str | None
    ) -> float:
        what = f"POST {backend_url}/generate"
        async with session.post(backend_url + "/generate", json=self.body(text)) as resp:
            if 400 <= resp.status < 500:
                raise await refusal(resp, what, HINT)
            data = await read_json(resp, what, HINT)
        if not isinstance(data, dict) or "generated_text" not in data:
            raise BackendError(f"{what} answered without generated_text: {str(data)[:200]}")
        details = data.get("details")
        tokens = details.get("generated_tokens") if isinstance(details, dict) else None
        if isinstance(tokens, int) and not isinstance(tokens, bool):
            return float(tokens)
        return float(self.max_tokens)


DEFAULT: Final = TGIBenchmark()


async def benchmark(backend_url: str, session: aiohttp.ClientSession) -> float:
    """``BENCHMARK=vespid.benchmarks.tgi:benchmark``: tokens generated per second."""
    return await DEFAULT(backend_url, session)
