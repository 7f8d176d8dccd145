"""Hugging Face's ``text-generation`` client, talking to TGI through a vespid worker.

The client sends TGI's own bodies (no vespid envelope), so the worker needs the TGI
handlers (``VESPID_HANDLERS=vespid.handlers.tgi:handlers``) and either:

- development: ``UNSECURED=true VESPID_RAW_REQUESTS=true``: bodies are taken as they come;
- signed: the router's auth_data, as JSON, in the ``X-Vespid-Auth`` header
  (``Client(url, headers={"X-Vespid-Auth": json.dumps(auth_data)})``), one per request
  with vespid's own signatures, which are single-use.

``python -m examples.tgi.client http://127.0.0.1:3000 "What is deep learning?"``
"""

from __future__ import annotations

import json
import sys
from typing import Any

from text_generation import Client

from vespid.protocol.wire import AUTH_HEADER


def client_for(worker_url: str, auth_data: dict[str, Any] | None = None) -> Client:
    """A text-generation Client for a worker; ``auth_data`` for a secured one."""
    headers = {AUTH_HEADER: json.dumps(auth_data)} if auth_data is not None else None
    return Client(worker_url, headers=headers)


def generate(worker_url: str, prompt: str, max_new_tokens: int = 20) -> str:
    return str(
        client_for(worker_url).generate(prompt, max_new_tokens=max_new_tokens).generated_text
    )


def stream(worker_url: str, prompt: str, max_new_tokens: int = 20) -> list[str]:
    events = client_for(worker_url).generate_stream(prompt, max_new_tokens=max_new_tokens)
    return [event.token.text for event in events]


if __name__ == "__main__":
    print("".join(stream(sys.argv[1], sys.argv[2])))
