"""Handlers for Text Generation Inference's native routes: ``/generate``,
``/generate_stream`` and ``/`` (the one the ``text-generation`` client calls).

Each checks the body as TGI would (``inputs`` a string, ``parameters`` an object,
``max_new_tokens`` a positive integer), refusing a bad one with 422 and TGI's own
``"error_type": "validation"`` (so TGI's clients raise their ``ValidationError``), and
weighs the request on the worker by ``parameters.max_new_tokens`` (100 when absent).
The body goes to the backend unchanged and the answer, streamed or not, comes back
unchanged. ``VESPID_HANDLERS=vespid.handlers.tgi:handlers`` serves all three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from vespid.errors import PayloadInvalid
from vespid.handlers.base import BackendCall, Handler
from vespid.protocol.wire import dumps

__all__ = ["DEFAULT_MAX_NEW_TOKENS", "TGIHandler", "TGIRequest", "handlers"]

DEFAULT_MAX_NEW_TOKENS: Final = 100


@dataclass(frozen=True, slots=True)
class TGIRequest:
    """A checked TGI request, and the body as it came."""

    inputs: str
    max_new_tokens: int | None
    stream: bool
    body: dict[str, Any]


def _invalid(message: str, field: str, problem: str) -> PayloadInvalid:
    return PayloadInvalid(
        f"Input validation error: {message}", fields={field: problem}, error_type="validation"
    )


class TGIHandler(Handler[TGIRequest]):
    """One TGI route; the body passes through unchanged once checked."""

    def __init__(
        self, path: str = "/generate", *, default_max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    ) -> None:
        self.path = path
        self.default_max_new_tokens = default_max_new_tokens

    def parse(self, payload: Any) -> TGIRequest:
        if not isinstance(payload, dict):
            raise _invalid(
                'the body must be a JSON object {"inputs": ..., "parameters": {...}}',
                "body",
                "expected an object",
            )
        inputs = payload.get("inputs")
        if not isinstance(inputs, str):
            raise _invalid(
                "`inputs` must be a string",
                "inputs",
                "missing" if inputs is None else "expected a string",
            )
        params = payload.get("parameters")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise _invalid("`parameters` must be an object", "parameters", "expected an object")
        max_new = params.get("max_new_tokens")
        if max_new is not None and (
            not isinstance(max_new, int) or isinstance(max_new, bool) or max_new <= 0
        ):
            raise _invalid(
                "`max_new_tokens` must be strictly positive",
                "parameters.max_new_tokens",
                "expected an integer > 0",
            )
        stream = payload.get("stream", False)
        if not isinstance(stream, bool):
            raise _invalid("`stream` must be true or false", "stream", "expected a boolean")
        return TGIRequest(inputs, max_new, stream, payload)

    def workload(self, value: TGIRequest, cost: float) -> float:
        """Tokens the request may generate: ``max_new_tokens`` (100 when absent)."""
        return float(value.max_new_tokens or self.default_max_new_tokens)

    def backend_call(self, value: TGIRequest, path_qs: str) -> BackendCall:
        return BackendCall(path_qs, dumps(value.body))


handlers: Final = [TGIHandler("/"), TGIHandler("/generate"), TGIHandler("/generate_stream")]
