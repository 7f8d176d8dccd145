"""Realistic prompts for the LLM benchmarks, from a word list shipped with the package.

The list (``words.txt``, about a thousand common English words) is package data, so a
benchmark never downloads anything. Prompt lengths are drawn log-uniformly between a
lower and an upper bound: short prompts are common and long ones rare, as in real
traffic. Worked example: with bounds (16, 512) the median prompt is
sqrt(16 * 512) = 90.5 words, and a quarter of the prompts are shorter than 38 words.
"""

from __future__ import annotations

import asyncio
import functools
import math
import random
from importlib import resources

__all__ = ["load_words", "preload_words", "prompt", "prompt_length"]


@functools.cache
def load_words() -> tuple[str, ...]:
    """The shipped word list, one entry per word, read once."""
    text = resources.files("vespid.benchmarks").joinpath("words.txt").read_text("utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


async def preload_words() -> None:
    """Read the word list in a thread, so later calls on the event loop never block."""
    await asyncio.to_thread(load_words)


def prompt_length(rng: random.Random, min_words: int, max_words: int) -> int:
    """A prompt length in words, log-uniform in [min_words, max_words]."""
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= max_words (got {min_words}, {max_words})")
    drawn = math.exp(rng.uniform(math.log(min_words), math.log(max_words + 1)))
    return max(min_words, min(max_words, int(drawn)))


def prompt(rng: random.Random, min_words: int = 16, max_words: int = 512) -> str:
    """A prompt of realistic, varied length: words from the shipped list, a sentence at a time."""
    words = load_words()
    count = prompt_length(rng, min_words, max_words)
    chosen = rng.choices(words, k=count)
    sentences: list[str] = []
    start = 0
    while start < count:
        end = min(count, start + rng.randint(6, 18))
        sentence = " ".join(chosen[start:end])
        sentences.append(sentence[:1].upper() + sentence[1:] + ".")
        start = end
    return " ".join(sentences)
