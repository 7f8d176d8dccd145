"""``vespid control`` (serve the router and autoscaler) and ``vespid endpoint`` (manage
endpoints over the control plane's admin API; ``update --wait`` and ``rollback --wait``
follow the rollout of the new revision until it is done or halts)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any, Final

import aiohttp
import click

from vespid.cli.admin import ADMIN_KEY_ENV, admin_request, find_admin_key, key_file
from vespid.cli.options import flag_names, setting_options, with_options
from vespid.control.settings import ControlSettings
from vespid.logs import setup_logging
from vespid.runtime import exit_on_config_error, serve_until_signalled
from vespid.settings import load_settings

__all__ = ["POLL_S", "control", "endpoint", "progress_line"]


@click.command()
@setting_options(ControlSettings)
def control(**flags: Any) -> None:
    """Run the router and autoscaler (see docs/control.md)."""
    with exit_on_config_error("vespid control"):
        settings = load_settings(ControlSettings, os.environ, flags, names=flag_names(flags))
    setup_logging(settings.log_level)
    from vespid.control.serve import serve_control

    serve_until_signalled("vespid control", lambda stop: serve_control(settings, os.environ, stop))


URL_HELP = "Control plane URL [env VESPID_URL]."
KEY_HELP = "Admin key [env VESPID_ADMIN_KEY; default: STATE_DIR/admin.key]."


def _call(ctx: click.Context, method: str, path: str, body: Any = None) -> Any:
    url = ctx.obj["url"]
    key = find_admin_key(ctx.obj["admin_key"])
    if key is None:
        raise click.UsageError(
            f"no admin key: pass --admin-key or set {ADMIN_KEY_ENV} ({key_file()} "
            "is written by `vespid control`)"
        )
    try:
        status, data = asyncio.run(admin_request(url, key, method, path, body))
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise click.ClickException(f"cannot reach the control plane at {url}: {exc}") from None
    if status >= 400:
        message = data.get("error") if isinstance(data, dict) else data
        raise click.ClickException(f"{status}: {message}")
    return data


def _echo(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


def _override(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """An option given after the subcommand wins over the group's (or its variable)."""
    if value is not None and param.name is not None:
        ctx.obj[param.name] = value


# Given after the subcommand (``vespid endpoint list --admin-key K``), as well as before it.
_admin_options = with_options([
    click.option("--url", default=None, expose_value=False, callback=_override, help=URL_HELP),
    click.option("--admin-key", default=None, expose_value=False, callback=_override,
                 help=KEY_HELP),
])  # fmt: skip


@click.group()
@click.option("--url", envvar="VESPID_URL", default="http://127.0.0.1:8080", help=URL_HELP)
@click.option("--admin-key", envvar=ADMIN_KEY_ENV, default=None, help=KEY_HELP)
@click.pass_context
def endpoint(ctx: click.Context, url: str, admin_key: str | None) -> None:
    """Create, list, update and delete endpoints.

    --url and --admin-key go before or after the subcommand.
    """
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
@_admin_options
@_spec_options
@click.pass_context
def create(ctx: click.Context, /, name: str, **opts: Any) -> None:
    """Create endpoint NAME."""
    _echo(_call(ctx, "POST", "/api/v0/endpoints", _spec(name, **opts)))


POLL_S: Final = 0.5  # how often --wait asks how the rollout goes

_wait_options = with_options([
    click.option("--wait", is_flag=True,
                 help="Show the rollout's progress until every worker runs the new revision; "
                      "exit 1 if it halts."),
    click.option("--timeout", type=float, default=900.0, show_default=True,
                 help="With --wait: give up after this many seconds (exit 1)."),
])  # fmt: skip


@endpoint.command("update")
@click.argument("name")
@_admin_options
@_spec_options
@_wait_options
@click.pass_context
def update(ctx: click.Context, /, name: str, wait: bool, timeout: float, **opts: Any) -> None:
    """Change some fields of endpoint NAME; a template change is a new revision, rolled
    out to the workers (old ones drained as new ones are ready)."""
    spec = _spec(name, **opts)
    spec.pop("name")
    answer = _call(ctx, "PUT", f"/api/v0/endpoints/{name}", spec)
    _echo(answer)
    if wait:
        _follow(ctx, name, int(answer["revision"]), timeout)


@endpoint.command("rollback")
@click.argument("name")
@_admin_options
@_wait_options
@click.pass_context
def rollback(ctx: click.Context, name: str, wait: bool, timeout: float) -> None:
    """Put endpoint NAME back on its previous template, as a new revision."""
    answer = _call(ctx, "POST", f"/api/v0/endpoints/{name}/rollback")
    _echo(answer)
    if wait:
        _follow(ctx, name, int(answer["revision"]), timeout)


def _follow(ctx: click.Context, name: str, revision: int, timeout_s: float) -> None:
    """Print the rollout's progress as it changes, until it is done; ClickException
    (exit 1) if it halts, a newer revision replaces it, or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    shown = ""
    while True:
        status = _call(ctx, "GET", f"/api/v0/endpoints/{name}/rollout")
        if (line := progress_line(status)) != shown:
            click.echo(line, err=True)
            shown = line
        if status["revision"] != revision:
            raise click.ClickException(
                f"{name} is on revision {status['revision']} now (changed by someone else)"
            )
        if status["state"] == "done":
            return
        if status["state"] == "halted":
            raise click.ClickException(
                f"rollout of {name} to revision {revision} halted: {status['halted']}; the old "
                f"workers keep serving (fix the template and update, or: vespid endpoint "
                f"rollback {name})"
            )
        if time.monotonic() > deadline:
            raise click.ClickException(
                f"rollout of {name} to revision {revision} not done in {timeout_s:g} s; it "
                f"goes on (see GET /api/v0/endpoints/{name}/rollout)"
            )
        time.sleep(POLL_S)


def progress_line(status: dict[str, Any]) -> str:
    """``revision 3: rolling; r2: draining 1, ready 1; r3: ready 1``."""
    parts = [f"revision {status['revision']}: {status['state']}"]
    for revision, phases in status["workers"].items():
        counts = ", ".join(f"{phase} {n}" for phase, n in phases.items())
        parts.append(f"r{revision}: {counts}")
    return "; ".join(parts)


@endpoint.command("list")
@_admin_options
@click.pass_context
def list_(ctx: click.Context) -> None:
    """List endpoints."""
    _echo(_call(ctx, "GET", "/api/v0/endpoints"))


@endpoint.command("delete")
@click.argument("name")
@_admin_options
@click.pass_context
def delete(ctx: click.Context, name: str) -> None:
    """Delete endpoint NAME (its workers are stopped)."""
    _echo(_call(ctx, "DELETE", f"/api/v0/endpoints/{name}"))
