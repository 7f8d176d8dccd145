"""Replaying recorded arrivals against a real endpoint: the requests of a trace (or of a
generated load, ``vespid.simulate.load``), each sent at its own time through the client.

``replay_plan(endpoint, arrivals)`` is a ``LoadPlan`` whose schedule is the arrivals'
times (open loop: a slow answer never delays the next request), and ``ArrivalPayloads``
sends request ``i`` as an OpenAI completion of ``arrivals[i]``'s sizes: a prompt of
``prompt_tokens`` words and ``max_tokens`` = ``output_tokens``, which is also its cost
(vespid's LLM workload is tokens generated). ``RequestRun(replay_plan(...),
ArrivalPayloads(arrivals)).execute(client)`` runs it as any load test.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Final

from vespid.errors import ConfigError
from vespid.loadtest.payloads import Payload
from vespid.loadtest.plan import LoadPlan
from vespid.simulate.load import Arrival

__all__ = ["PROMPT_WORD", "ArrivalPayloads", "replay_plan"]

PROMPT_WORD: Final = "token"  # a prompt of N tokens is this word N times (one token each)


class ArrivalPayloads:
    """Request ``i``: ``POST /v1/completions`` with ``arrivals[i]``'s prompt and output sizes."""

    def __init__(self, arrivals: Sequence[Arrival], *, path: str = "/v1/completions") -> None:
        self.arrivals = arrivals
        self.path = path

    def __call__(self, index: int) -> Payload:
        arrival = self.arrivals[index]
        prompt = " ".join([PROMPT_WORD] * arrival.prompt_tokens)
        body = {"prompt": prompt, "max_tokens": arrival.output_tokens}
        return Payload(self.path, body, float(arrival.output_tokens))


def replay_plan(
    endpoint: str,
    arrivals: Sequence[Arrival],
    *,
    timeout_s: float = 600.0,
    sample_interval_s: float = 1.0,
    grace_s: float = 60.0,
) -> LoadPlan:
    """A plan that starts request ``i`` at ``arrivals[i].at_s`` (in time order), and gives
    up ``grace_s`` after the last arrival."""
    if not arrivals:
        raise ConfigError("nothing to replay: the load holds no request")
    times = tuple(a.at_s for a in arrivals)
    if any(b < a for a, b in pairwise(times)):
        raise ConfigError("the arrivals to replay must be in time order")
    span = max(times[-1], 1e-3)
    return LoadPlan(
        endpoint,
        len(arrivals),
        rps=len(arrivals) / span,  # the mean rate, for the report
        timeout_s=timeout_s,
        max_time_s=times[-1] + grace_s,
        sample_interval_s=sample_interval_s,
        schedule=times,
    )
