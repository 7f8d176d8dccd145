"""``vespid control`` (serve the router and autoscaler) and ``vespid endpoint`` (manage
endpoints over the control plane's admin API)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import click

from vespid.cli.options import setting_options, with_options
from vespid.control.settings import ControlSettings
from vespid.logs import setup_logging
from vespid.runtime import exit_on_config_error, serve_until_signalled
from vespid.settings import load_settings

__all__ = ["control", "endpoint"]


@click.command()
@setting_options(ControlSettings)
def control(**flags: Any) -> None:
    """Run the router and autoscaler (see docs/control.md)."""
    with exit_on_config_error("vespid control"):
        settings = load_settings(ControlSettings, os.environ, flags)
    setup_logging(settings.log_level)
    from vespid.control.serve import serve_control

    serve_until_signalled("vespid control", lambda stop: serve_control(settings, os.environ, stop))


URL_HELP = "Control plane URL [env VESPID_URL]."
KEY_HELP = "Admin key [env VESPID_ADMIN_KEY; default: STATE_DIR/admin.key]."


def _admin_key(given: str | None) -> str:
    if given:
        return given
    state_dir = Path(os.environ.get("VESPID_STATE_DIR", Path.home() / ".vespid"))
    try:
        return (state_dir / "admin.key").read_text().strip()
    except OSError:
        raise click.UsageError(
            f"no admin key: pass --admin-key or set VESPID_ADMIN_KEY ({state_dir}/admin.key "
            "is written by `vespid control`)"
        ) from None


def _call(ctx: click.Context, method: str, path: str, body: Any = None) -> Any:
    url, key = ctx.obj["url"], _admin_key(ctx.obj["admin_key"])

    async def go() -> tuple[int, Any]:
        async with aiohttp.ClientSession() as http, http.request(
            method, url.rstrip("/") + path, json=body,
            headers={"Authorization": f"Bearer {key}"},
        ) as resp:  # fmt: skip
            return resp.status, await resp.json(content_type=None)

    try:
        status, data = asyncio.run(go())
    except aiohttp.ClientError as exc:
        raise click.ClickException(f"cannot reach the control plane at {url}: {exc}") from None
    if status >= 400:
        message = data.get("error") if isinstance(data, dict) else data
        raise click.ClickException(f"{status}: {message}")
    return data


def _echo(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


@click.group()
@click.option("--url", envvar="VESPID_URL", default="http://127.0.0.1:8080", help=URL_HELP)
@click.option("--admin-key", envvar="VESPID_ADMIN_KEY", default=None, help=KEY_HELP)
@click.pass_context
def endpoint(ctx: click.Context, url: str, admin_key: str | None) -> None:
    """Create, list, update and delete endpoints."""
    ctx.obj = {"url": url, "admin_key": admin_key}


def _spec(
    name: str, api_key: str | None, scaling: tuple[str, ...], env: tuple[str, ...],
    model_command: str | None, gpus: int | None,
) -> dict[str, Any]:  # fmt: skip
    spec: dict[str, Any] = {"name": name}
    if api_key:
        spec["api_key"] = api_key
    if scaling:
        spec["scaling"] = dict(_pair(s, "--set") for s in scaling)
    template: dict[str, Any] = {}
    if model_command:
        template["model_command"] = model_command.split()
    if env:
        template["env"] = dict(_pair(e, "--env") for e in env)
    if gpus is not None:
        template["gpus_per_worker"] = gpus
    if template:
        spec["template"] = template
    return spec


def _pair(text: str, option: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise click.BadParameter(f"expected KEY=VALUE, got {text!r}", param_hint=option)
    try:
        return key, json.loads(value) if option == "--set" else value
    except json.JSONDecodeError:
        return key, value


_spec_options = with_options([
    click.option("--api-key", default=None, help="Key clients use (generated if omitted)."),
    click.option("--set", "scaling", multiple=True, metavar="PARAM=VALUE",
                 help="A scaling parameter, e.g. --set max_workers=2 --set min_load=0."),
    click.option("--env", multiple=True, metavar="KEY=VALUE", help="Worker environment."),
    click.option("--model-command", default=None,
                 help="Model server command ({model_port} is filled in); none: a null worker."),
    click.option("--gpus", type=int, default=None, help="GPUs per worker."),
])  # fmt: skip


@endpoint.command("create")
@click.argument("name")
@_spec_options
@click.pass_context
def create(ctx: click.Context, /, name: str, **opts: Any) -> None:
    """Create endpoint NAME."""
    _echo(_call(ctx, "POST", "/api/v0/endpoints", _spec(name, **opts)))


@endpoint.command("update")
@click.argument("name")
@_spec_options
@click.pass_context
def update(ctx: click.Context, /, name: str, **opts: Any) -> None:
    """Change some fields of endpoint NAME."""
    spec = _spec(name, **opts)
    spec.pop("name")
    _echo(_call(ctx, "PUT", f"/api/v0/endpoints/{name}", spec))


@endpoint.command("list")
@click.pass_context
def list_(ctx: click.Context) -> None:
    """List endpoints."""
    _echo(_call(ctx, "GET", "/api/v0/endpoints"))


@endpoint.command("delete")
@click.argument("name")
@click.pass_context
def delete(ctx: click.Context, name: str) -> None:
    """Delete endpoint NAME (its workers are stopped)."""
    _echo(_call(ctx, "DELETE", f"/api/v0/endpoints/{name}"))
