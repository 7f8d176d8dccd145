"""What a load test sends: one ``Payload`` (path, JSON body, cost) per request.

Payloads come from a file, cycled (``--payload``), or from a generator for one of
the APIs vespid knows (``--api``):

- ``openai``: ``POST /v1/completions`` with a varied prompt and ``max_tokens``
  drawn between half of ``--max-tokens`` and all of it; cost = ``max_tokens``.
- ``tgi``: ``POST /generate`` (``/generate_stream`` with ``--stream``) with
  ``{"inputs", "parameters": {"max_new_tokens"}}``; cost = ``max_new_tokens``.
- ``generic``: ``POST /`` (or ``--path``) with ``{"input": prompt}``; cost =
  ``--cost`` (100 if not given).

Payload ``i`` depends only on the seed and ``i``, so two runs with the same seed
send the same requests whatever order they finish in.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import orjson

from vespid.benchmarks.words import prompt
from vespid.client.endpoint import DEFAULT_COST
from vespid.errors import ConfigError

__all__ = [
    "APIS",
    "DEFAULT_PATHS",
    "Api",
    "CycledPayloads",
    "GeneratedPayloads",
    "Payload",
    "PayloadSource",
    "cost_of",
    "load_payload_file",
]

Api = Literal["openai", "tgi", "generic"]
APIS: Final[tuple[Api, ...]] = ("openai", "tgi", "generic")
DEFAULT_PATHS: Final[dict[str, str]] = {
    "openai": "/v1/completions",
    "tgi": "/generate",
    "generic": "/",
}
_STREAM_PATHS: Final[dict[str, str]] = {"tgi": "/generate_stream"}
_TEMPLATES: Final = (
    "Write a short story about {words}.",
    "Explain, in simple terms, how {words} relate to each other.",
    "Continue this list: {words},",
    "Summarize the following notes: {words}.",
    "Translate into French: {words}.",
)


@dataclass(frozen=True, slots=True)
class Payload:
    """One request: where it goes on the worker, its JSON body, its workload."""

    path: str
    body: Any
    cost: float


class PayloadSource(Protocol):
    """Gives the payload of request number ``index`` (counting from 0)."""

    def __call__(self, index: int) -> Payload: ...


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def cost_of(api: Api, body: Any) -> float | None:
    """The workload a body asks for under ``api``'s rule, if it says: OpenAI's
    ``max_tokens`` (or ``max_completion_tokens``), TGI's ``parameters.max_new_tokens``."""
    if not isinstance(body, dict):
        return None
    if api == "openai":
        return _number(body.get("max_tokens")) or _number(body.get("max_completion_tokens"))
    if api == "tgi":
        params = body.get("parameters")
        return _number(params.get("max_new_tokens")) if isinstance(params, dict) else None
    return None


def _path(path: str) -> str:
    return path if path.startswith("/") else "/" + path


class GeneratedPayloads:
    """Varied prompts for ``api``; ``max_tokens`` between ``max_tokens // 2`` and it."""

    def __init__(
        self,
        api: Api,
        *,
        max_tokens: int = 64,
        stream: bool = False,
        path: str | None = None,
        cost: float | None = None,
        seed: int = 0,
    ) -> None:
        if api not in APIS:
            raise ConfigError(f"unknown API {api!r}; expected one of {', '.join(APIS)}")
        if max_tokens < 1:
            raise ConfigError(f"max_tokens must be at least 1 (got {max_tokens})")
        self.api = api
        self.max_tokens = max_tokens
        self.stream = stream
        self.path = _path(
            path or (_STREAM_PATHS.get(api) if stream else None) or DEFAULT_PATHS[api]
        )
        self.cost = cost
        self.seed = seed

    def prompt(self, rng: random.Random) -> str:
        words = prompt(rng, 4, 24)
        return rng.choice(_TEMPLATES).format(words=words)

    def __call__(self, index: int) -> Payload:
        rng = random.Random(self.seed * 1_000_003 + index)
        prompt = self.prompt(rng)
        tokens = rng.randint(max(1, self.max_tokens // 2), self.max_tokens)
        body: dict[str, Any]
        if self.api == "openai":
            body = {"prompt": prompt, "max_tokens": tokens, "temperature": 0.7}
            if self.stream:
                body["stream"] = True
        elif self.api == "tgi":
            body = {"inputs": prompt, "parameters": {"max_new_tokens": tokens}}
        else:
            body = {"input": prompt}
        cost = self.cost if self.cost is not None else cost_of(self.api, body) or DEFAULT_COST
        return Payload(self.path, body, cost)


class CycledPayloads:
    """The bodies of a file, one per request, from the first again after the last."""

    def __init__(
        self, bodies: Sequence[Any], *, api: Api, path: str | None = None, cost: float | None = None
    ) -> None:
        if not bodies:
            raise ConfigError("no payloads to send: the payload file holds none")
        self.bodies = list(bodies)
        self.api = api
        self.path = _path(path or DEFAULT_PATHS[api])
        self.cost = cost

    def __call__(self, index: int) -> Payload:
        body = self.bodies[index % len(self.bodies)]
        cost = self.cost if self.cost is not None else cost_of(self.api, body) or DEFAULT_COST
        return Payload(self.path, body, cost)


def load_payload_file(path: Path) -> list[Any]:
    """Payload bodies from ``path``: a JSON array (one payload per item), a JSON
    value (one payload), or JSON lines (one payload per non-blank line)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--payload: cannot read {path} ({exc.strerror or exc})") from None
    try:
        whole = orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    else:
        bodies = whole if isinstance(whole, list) else [whole]
        if not bodies:
            raise ConfigError(
                f"--payload: {path} is an empty JSON array; give at least one payload"
            )
        return bodies
    bodies = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            bodies.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            raise ConfigError(
                f"--payload: {path} line {number} is not JSON ({exc}); give one JSON "
                "payload per line, or one JSON array of payloads"
            ) from None
    if not bodies:
        raise ConfigError(f"--payload: {path} holds no payload")
    return bodies
