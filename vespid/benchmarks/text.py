"""What the LLM benchmarks share: prompt settings, fitting prompts to the context, the ramp.

A subclass says how to send one prompt (``send``, returning the tokens generated) and,
if the API names models, which one to use (``pick_model``). Prompts are words from the
shipped list, log-uniform between ``min_prompt_words`` and ``max_prompt_words``. Before
measuring, the benchmark sends one prompt of the longest length; a server that refuses
it as too long for its context halves the bound until one fits (worked example: a
512-token context refuses 512, 256 and 128 words of about six tokens each, and accepts
64 words, so prompts then run from 16 to 64 words). That accepted prompt is also the
warm-up, and its time counts in the ramp's budget: on a slow CPU model the probe alone
takes seconds, and a worker's first start waits for all of it.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
import time
from dataclasses import dataclass, field
from typing import Final

import aiohttp

from vespid.benchmarks.ramp import Ramp, ramp
from vespid.benchmarks.words import preload_words, prompt
from vespid.errors import BackendError

__all__ = ["PromptTooLong", "TextBenchmark", "refusal"]

log = logging.getLogger("vespid.benchmark")

# What vLLM, llama.cpp and TGI say when a prompt does not fit the model's context.
_TOO_LONG: Final = re.compile(r"context|too long|maximum|must be <=|exceed", re.IGNORECASE)


class PromptTooLong(BackendError):
    """The server refused a prompt as longer than its context allows."""


async def refusal(resp: aiohttp.ClientResponse, what: str, hint: str) -> BackendError:
    """The error for a 4xx answer: PromptTooLong when it is about the context, else one
    naming the call, the answer and ``hint``."""
    detail = (await resp.read())[:300].decode(errors="replace")
    if resp.status in (400, 413, 422) and _TOO_LONG.search(detail):
        return PromptTooLong(f"{what} answered {resp.status}: {detail}")
    return BackendError(f"{what} answered {resp.status}: {detail} ({hint})")


@dataclass(frozen=True, slots=True)
class TextBenchmark:
    """Settings shared by the LLM benchmarks; an instance is a benchmark function."""

    max_tokens: int = 32
    min_prompt_words: int = 16
    max_prompt_words: int = 512
    model: str | None = None  # None: ask the server (where its API lists models)
    temperature: float = 0.8
    ramp: Ramp = field(default_factory=Ramp)

    name = "text"

    async def send(
        self, backend_url: str, session: aiohttp.ClientSession, text: str, model: str | None
    ) -> float:
        """Send one prompt; the tokens generated."""
        raise NotImplementedError

    async def pick_model(self, backend_url: str, session: aiohttp.ClientSession) -> str | None:
        return None

    async def fit_prompts(
        self, backend_url: str, session: aiohttp.ClientSession, model: str | None
    ) -> int:
        """The longest prompt (in words) the server accepts, halving from the maximum."""
        rng = random.Random(1)
        words = self.max_prompt_words
        while True:
            try:
                await self.send(backend_url, session, prompt(rng, words, words), model)
            except PromptTooLong as exc:
                if words <= self.min_prompt_words:
                    raise BackendError(
                        f"{self.name} benchmark: even a {words}-word prompt does not fit the "
                        f"model's context: {exc}"
                    ) from None
                words = max(self.min_prompt_words, words // 2)
                log.info("%s benchmark: prompts now up to %d words", self.name, words)
                continue
            return words

    async def __call__(self, backend_url: str, session: aiohttp.ClientSession) -> float:
        began = time.monotonic()
        await preload_words()
        model = self.model or await self.pick_model(backend_url, session)
        longest = await self.fit_prompts(backend_url, session, model)
        shortest = min(self.min_prompt_words, longest)

        async def one(rng: random.Random) -> float:
            return await self.send(backend_url, session, prompt(rng, shortest, longest), model)

        # The probe that fitted the prompts warmed the server: no second warm-up.
        settings = dataclasses.replace(self.ramp, warmup_requests=0)
        return await ramp(one, name=self.name, settings=settings, started=began)
