"""``vespid worker``: every setting is an environment variable and a flag."""

from __future__ import annotations

import os
from typing import Any

import click

from vespid.cli.options import setting_options
from vespid.logs import setup_logging
from vespid.runtime import exit_on_config_error, serve_until_signalled
from vespid.worker.settings import WorkerSettings, load_worker_settings

__all__ = ["run_worker", "worker"]


def run_worker(overrides: dict[str, Any]) -> None:
    """Load settings (environment, then flags), then serve until SIGINT/SIGTERM."""
    with exit_on_config_error("vespid worker"):
        settings = load_worker_settings(os.environ, overrides)
    setup_logging(settings.log_level)
    from vespid.worker.serve import serve

    serve_until_signalled("vespid worker", lambda stop: serve(settings, stop=stop))


@click.command()
@setting_options(WorkerSettings, {"public_port": "VAST_TCP_PORT_<WORKER_PORT>"})
def worker(**flags: Any) -> None:
    """Run a worker beside a model server (see docs/worker.md)."""
    run_worker(flags)
