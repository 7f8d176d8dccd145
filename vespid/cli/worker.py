"""``vespid worker``: every setting is an environment variable and a flag."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import click

from vespid.errors import ConfigError
from vespid.logs import setup_logging
from vespid.worker.settings import WorkerSettings, env_name, load_worker_settings

__all__ = ["run_worker", "worker"]


def run_worker(overrides: dict[str, Any]) -> None:
    """Load settings (environment, then flags), then serve until SIGINT/SIGTERM."""
    try:
        settings = load_worker_settings(os.environ, overrides)
    except ConfigError as exc:
        click.echo(f"vespid worker: {exc}", err=True)
        sys.exit(2)
    setup_logging(settings.log_level)
    from vespid.worker.app import serve

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop=stop)

    try:
        _run(main)
    except ConfigError as exc:
        click.echo(f"vespid worker: {exc}", err=True)
        sys.exit(2)


def _run(main: Callable[[], Any]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())


def _add_setting_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for name, field in reversed(WorkerSettings.model_fields.items()):
        env = env_name(name) if name != "public_port" else "VAST_TCP_PORT_<WORKER_PORT>"
        func = click.option(
            "--" + name.replace("_", "-"),
            name,
            default=None,
            metavar="VALUE",
            help=f"{field.description} [env {env}]",
        )(func)
    return func


@click.command()
@_add_setting_options
def worker(**flags: Any) -> None:
    """Run a worker beside a model server (see docs/worker.md)."""
    run_worker(flags)
