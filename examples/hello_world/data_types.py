"""The hello_world API payload, written as PyWorker's walk-through writes it.

Only the imports differ from PyWorker's: ``ApiPayload`` and ``JsonDataException`` come
from ``vespid.compat.pyworker``, the word list is vespid's shipped one (nothing is
downloaded), and the tokenizer is a whitespace split, a stand-in for the
``transformers`` tokenizer the walk-through uses.
"""

from __future__ import annotations

import dataclasses
import inspect
import random
from typing import Any

from vespid.benchmarks.words import load_words
from vespid.compat.pyworker import ApiPayload, JsonDataException

WORD_LIST = load_words()


def tokenize(text: str) -> list[str]:
    return text.split()


@dataclasses.dataclass
class InputData(ApiPayload):
    prompt: str
    max_response_tokens: int

    @classmethod
    def for_test(cls) -> InputData:
        """defines how create a payload for load testing"""
        prompt = " ".join(random.choices(WORD_LIST, k=250))
        return cls(prompt=prompt, max_response_tokens=300)

    def generate_payload_json(self) -> dict[str, Any]:
        """defines how to convert an ApiPayload to JSON that will be sent to model API"""
        return dataclasses.asdict(self)

    def count_workload(self) -> float:
        """defines how to calculate workload for a payload"""
        return len(tokenize(self.prompt))

    @classmethod
    def from_json_msg(cls, json_msg: dict[str, Any]) -> InputData:
        """transform the request's JSON payload into InputData; missing fields are a 422"""
        errors = {}
        for param in inspect.signature(cls).parameters:
            if param not in json_msg:
                errors[param] = "missing parameter"
        if errors:
            raise JsonDataException(errors)
        return cls(**{k: v for k, v in json_msg.items() if k in inspect.signature(cls).parameters})
