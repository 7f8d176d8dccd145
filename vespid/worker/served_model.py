"""Which model a backend says it serves, so a benchmark figure is kept per model.

Asked once, before the benchmark cache is read: OpenAI-compatible servers (vLLM,
llama.cpp, Ollama's and TGI's OpenAI mode) list ids at ``/v1/models``, TGI names its
``model_id`` at ``/info``, Ollama lists its models at ``/api/tags``. The first of
these that answers with a model wins; a server that answers none serves "no model
named" (the cache then rests on ``MODEL_NAME``, the server and the benchmark).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import aiohttp

__all__ = ["served_models"]

PROBE_TIMEOUT_S: Final = 5.0


def _openai_ids(data: Any) -> list[str]:
    entries = data.get("data") if isinstance(data, dict) else None
    return [str(e["id"]) for e in entries or [] if isinstance(e, dict) and e.get("id")]


def _tgi_id(data: Any) -> list[str]:
    model_id = data.get("model_id") if isinstance(data, dict) else None
    return [str(model_id)] if model_id else []


def _ollama_names(data: Any) -> list[str]:
    entries = data.get("models") if isinstance(data, dict) else None
    return [
        str(e.get("name") or e.get("model"))
        for e in entries or []
        if isinstance(e, dict) and (e.get("name") or e.get("model"))
    ]


PROBES: Final[tuple[tuple[str, Callable[[Any], list[str]]], ...]] = (
    ("/v1/models", _openai_ids),
    ("/info", _tgi_id),
    ("/api/tags", _ollama_names),
)


async def _ask(session: aiohttp.ClientSession, url: str) -> Any:
    """The JSON ``url`` answers with 200, or None (any failure reads as no answer)."""
    timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
    try:
        async with session.get(url, timeout=timeout) as resp:
            if resp.status != 200:
                await resp.read()
                return None
            return await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None


async def served_models(session: aiohttp.ClientSession, backend_url: str) -> list[str]:
    """The models the backend reports, sorted; empty when it reports none."""
    for path, read in PROBES:
        models = read(await _ask(session, backend_url + path))
        if models:
            return sorted(set(models))
    return []
