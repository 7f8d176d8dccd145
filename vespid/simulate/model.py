"""The simulated worker: an LLM server with a batch of streams, and its start-up.

A request takes one of a worker's ``streams`` slots from the moment it is routed until
its last token. It first prefills its prompt at ``prefill_tps`` tokens/s (the prompt
alone: prefills do not slow each other), then decodes its output; a worker decoding
``k`` streams at once gives each ``decode_tps / (1 + decode_slowdown × (k − 1))`` tokens/s
(every stream on the worker counts in ``k``, prefilling or decoding). A new worker is
ready ``cold_start_s`` after it is started; a parked worker is READY ``wake_s`` after it
is woken (vLLM's sleep mode level 1 copies the weights back from CPU memory). A busy
worker reports its load every ``report_s`` seconds (``vespid/worker/reporter.py``).

A worker's perf, the figure it would report as ``max_perf``, is the output tokens/s of a
full batch: ``streams × decode rate at k = streams`` (vespid's LLM workload is tokens
generated, docs/backends.md).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["WorkerModel"]


@dataclass(frozen=True, slots=True)
class WorkerModel:
    prefill_tps: float = 5000.0
    decode_tps: float = 40.0
    decode_slowdown: float = 0.05
    streams: int = 8
    cold_start_s: float = 30.0
    wake_s: float = 5.0
    report_s: float = 1.0

    def decode_rate(self, streams: int) -> float:
        """Tokens/s of each stream when ``streams`` share the worker (8 at 0.05: 40/1.35)."""
        return self.decode_tps / (1 + self.decode_slowdown * max(0, streams - 1))

    def prefill_s(self, prompt_tokens: int) -> float:
        return prompt_tokens / self.prefill_tps

    @property
    def perf(self) -> float:
        """Output tokens/s of a full batch: the worker's max_perf."""
        return self.streams * self.decode_rate(self.streams)
