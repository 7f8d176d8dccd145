"""``vespid call``: send one request to an endpoint and print the answer."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import click
import orjson

from vespid.client.call import call as call_endpoint
from vespid.client.call import error_line
from vespid.errors import VespidError

__all__ = ["call"]

URL_HELP = "Control plane (router) base URL."
KEY_HELP = "Account or endpoint API key; sent to the control plane only, never to workers."
COST_HELP = "Workload of the request, as the router counts it (e.g. max tokens)."
STREAM_HELP = "Print the answer as it arrives (SSE: one event a line, OpenAI text pieces as is)."
TIMEOUT_HELP = "Seconds for the whole call: queueing, re-routing and the answer."


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
@click.option(
    "--api-key", envvar="VESPID_API_KEY", required=True, help=KEY_HELP + " [env: VESPID_API_KEY]"
)
@click.option("--cost", type=float, default=100.0, show_default=True, help=COST_HELP)
@click.option("--stream", is_flag=True, help=STREAM_HELP)
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
    api_key: str,
    cost: float,
    stream: bool,
    timeout: float,
) -> None:  # fmt: skip
    """POST JSON to PATH on a worker of ENDPOINT, through the router.

    \b
    Example:
      vespid call my-llm /v1/completions '{"prompt": "Hello", "max_tokens": 16}'
    """

    try:
        asyncio.run(
            call_endpoint(
                url=url,
                api_key=api_key,
                endpoint=endpoint,
                path=path,
                payload=payload,
                cost=cost,
                stream=stream,
                timeout_s=timeout,
                write=_write,
            )
        )
    except VespidError as exc:
        click.echo(error_line(exc), err=True)
        sys.exit(1)
