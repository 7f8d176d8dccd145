"""The public ``vastai`` client, pointed at ``vespid control`` through its own settings."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from blockbuster import BlockBuster
from vastai.serverless.client import Serverless

from tests.control.conftest import MakeControl, admin
from tests.control.test_scaling_e2e import llama_endpoint


async def test_vastai_client_gets_an_answer_through_vespid(
    make_control: MakeControl,
    http: aiohttp.ClientSession,
    tiny_model: Path,
    blockbuster: BlockBuster,
) -> None:
    blockbuster.deactivate()  # vastai's client writes a temporary file on the event loop
    control = await make_control()
    _, ep = await admin(http, control, "POST", "/api/v0/endpoints", llama_endpoint(tiny_model))
    client = Serverless(ep["api_key"], autoscaler_url=control.url, webserver_url=control.url)
    # vastai fetches a root certificate before its first call; vespid serves its own.
    client.SSL_CERT_URL = control.url + "/ca.pem"
    async with client:
        endpoint = await client.get_endpoint(name="llm")
        result = await endpoint.request(
            "/v1/completions", {"prompt": "hello", "max_tokens": 3}, cost=3, timeout=90
        )
    assert result["ok"] is True
    assert result["status"] == 200
    assert result["response"]["usage"]["completion_tokens"] == 3
    assert result["url"].startswith("http://127.0.0.1:")
