"""``vespid call``: send one request to an endpoint and print the answer.

Defaults that save typing: the API key is looked up with the control plane's admin
key when not given, ``--stream`` asks an OpenAI route for a streamed answer, and the
cost is the request's max tokens where the route has such a rule.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import click
import orjson

from vespid.cli.admin import ADMIN_KEY_ENV, admin_request, find_admin_key, key_file
from vespid.client.call import call as call_endpoint
from vespid.client.call import error_line, stream_payload
from vespid.client.endpoint import DEFAULT_COST
from vespid.client.errors import ControlPlaneError, EndpointNotFound
from vespid.errors import ConfigError, VespidError
from vespid.loadtest.payloads import Api, cost_of

__all__ = ["COST_RULES", "call", "default_cost", "endpoint_api_key"]

URL_HELP = "Control plane (router) base URL."
KEY_HELP = (
    "Account or endpoint API key; sent to the control plane only, never to workers. "
    "[env: VESPID_API_KEY; default: looked up with the admin key, "
    "VESPID_ADMIN_KEY or STATE_DIR/admin.key]"
)
COST_HELP = (
    "Workload of the request, as the router counts it [default: the payload's max_tokens "
    "(or max_completion_tokens) on /v1/completions and /v1/chat/completions, "
    "parameters.max_new_tokens on /generate and /generate_stream; else 100]."
)
STREAM_HELP = (
    "Print the answer as it arrives (SSE: one event a line, OpenAI text pieces as is). "
    'On /v1/completions and /v1/chat/completions, adds "stream": true to a payload '
    "without a stream key."
)
RAW_HELP = "Print the answer as the worker sent it, not an OpenAI completion's text."
TIMEOUT_HELP = "Seconds for the whole call: queueing, re-routing and the answer."

# The routes whose payloads say their own workload, and the rule that reads it.
COST_RULES: Final[dict[str, Api]] = {
    "/v1/completions": "openai",
    "/v1/chat/completions": "openai",
    "/generate": "tgi",
    "/generate_stream": "tgi",
}


def default_cost(path: str, payload: Any) -> float:
    """The workload ``payload`` asks for on ``path`` (its max tokens), else ``DEFAULT_COST``."""
    api = COST_RULES.get(path.partition("?")[0].rstrip("/"))
    return (cost_of(api, payload) if api else None) or DEFAULT_COST


def _no_key_message() -> str:
    return (
        "no API key: pass --api-key KEY, set VESPID_API_KEY, or give the control plane's "
        f"admin key to look it up ({ADMIN_KEY_ENV}, or {key_file()} as `vespid control` "
        "writes it)"
    )


async def endpoint_api_key(url: str, name: str) -> str:
    """Endpoint ``name``'s API key, from the admin API with the admin key
    (``GET /api/v0/endpoints/<name>``); ``ConfigError`` when there is no usable admin key."""
    admin_key = find_admin_key(os.environ.get(ADMIN_KEY_ENV))
    if admin_key is None:
        raise ConfigError(_no_key_message())
    path = f"/api/v0/endpoints/{quote(name, safe='')}"
    try:
        status, data = await admin_request(url, admin_key, "GET", path)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise ControlPlaneError(
            f"cannot reach the control plane at {url} to look up {name!r}'s API key ({exc}); "
            "is `vespid control` running there?"
        ) from None
    key = data.get("api_key") if isinstance(data, dict) else None
    if status == 200 and isinstance(key, str):
        return key
    if status == 404:
        raise EndpointNotFound(
            f"no endpoint named {name!r} at {url}; check the name (vespid endpoint list), "
            "or create the endpoint first",
            name=name,
        )
    if status in (401, 403):
        raise ConfigError(f"{_no_key_message()}; {url} refused the admin key found")
    raise ControlPlaneError(
        f"{url} answered {status} to {path} while looking up the API key", status=status, body=data
    )


def _json_argument(ctx: click.Context, param: click.Parameter, value: str) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f'not valid JSON ({exc}); e.g. \'{{"prompt": "hi"}}\'') from None


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


@click.command()
@click.argument("endpoint")
@click.argument("path")
@click.argument("payload", metavar="JSON", callback=_json_argument)
@click.option(
    "--url",
    envvar="VESPID_URL",
    default="http://127.0.0.1:8080",
    show_default=True,
    help=URL_HELP + " [env: VESPID_URL]",
)
@click.option("--api-key", envvar="VESPID_API_KEY", default=None, help=KEY_HELP)
@click.option("--cost", type=float, default=None, help=COST_HELP)
@click.option("--stream", is_flag=True, help=STREAM_HELP)
@click.option("--raw", is_flag=True, help=RAW_HELP)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=600.0,
    show_default=True,
    help=TIMEOUT_HELP,
)
def call(
    endpoint: str,
    path: str,
    payload: Any,
    url: str,
    api_key: str | None,
    cost: float | None,
    stream: bool,
    raw: bool,
    timeout: float,
) -> None:  # fmt: skip
    """POST JSON to PATH on a worker of ENDPOINT, through the router.

    \b
    Example:
      vespid call my-llm /v1/completions '{"prompt": "Hello", "max_tokens": 16}' --stream
    """
    if stream:
        payload = stream_payload(path, payload)

    async def main() -> None:
        await call_endpoint(
            url=url,
            api_key=api_key or await endpoint_api_key(url, endpoint),
            endpoint=endpoint,
            path=path,
            payload=payload,
            cost=default_cost(path, payload) if cost is None else cost,
            stream=stream,
            timeout_s=timeout,
            write=_write,
            raw=raw,
        )

    try:
        asyncio.run(main())
    except ConfigError as exc:
        click.echo(error_line(exc), err=True)
        sys.exit(2)
    except VespidError as exc:
        click.echo(error_line(exc), err=True)
        sys.exit(1)
