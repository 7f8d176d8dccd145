"""``vespid worker``: every setting is an environment variable and a flag."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import click
from pydantic import BaseModel

from vespid.errors import ConfigError
from vespid.logs import setup_logging
from vespid.settings import env_name as settings_env_name
from vespid.worker.settings import WorkerSettings, load_worker_settings

__all__ = ["run_async", "run_worker", "serve_until_signalled", "setting_options", "worker"]


def run_worker(overrides: dict[str, Any]) -> None:
    """Load settings (environment, then flags), then serve until SIGINT/SIGTERM."""
    try:
        settings = load_worker_settings(os.environ, overrides)
    except ConfigError as exc:
        click.echo(f"vespid worker: {exc}", err=True)
        sys.exit(2)
    setup_logging(settings.log_level)
    from vespid.worker.serve import serve

    serve_until_signalled("vespid worker", lambda stop: serve(settings, stop=stop))


def serve_until_signalled(
    name: str, serve: Callable[[asyncio.Event], Coroutine[Any, Any, None]]
) -> None:
    """Run ``serve(stop)`` until SIGINT or SIGTERM sets ``stop``; a ConfigError raised on
    the way up is one line on stderr and exit code 2."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(stop)

    try:
        run_async(main)
    except ConfigError as exc:
        click.echo(f"{name}: {exc}", err=True)
        sys.exit(2)


def run_async(main: Callable[[], Any]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())


def setting_options(
    model: type[BaseModel], rename: Mapping[str, str] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """One ``--flag VALUE`` per settings field, its help naming the variable."""

    def add(func: Callable[..., Any]) -> Callable[..., Any]:
        for name, field in reversed(model.model_fields.items()):
            env = (rename or {}).get(name) or settings_env_name(model, name)
            func = click.option(
                "--" + name.replace("_", "-"),
                name,
                default=None,
                metavar="VALUE",
                help=f"{field.description} [env {env}]",
            )(func)
        return func

    return add


@click.command()
@setting_options(WorkerSettings, {"public_port": "VAST_TCP_PORT_<WORKER_PORT>"})
def worker(**flags: Any) -> None:
    """Run a worker beside a model server (see docs/worker.md)."""
    run_worker(flags)
