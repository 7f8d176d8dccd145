"""``vespid worker``: every setting is an environment variable and a flag.

``--help`` lists the flags under headings (``SECTIONS``), each with its variable, its
default and the kind of value it takes; a bad value is reported under the name the user
typed: the flag when a flag was given, else the environment variable.
"""

from __future__ import annotations

import os
from typing import Any, Final

import click

from vespid.cli.options import SectionedCommand, flag_names, setting_options
from vespid.logs import setup_logging
from vespid.runtime import exit_on_config_error, serve_until_signalled
from vespid.worker.settings import WorkerSettings, load_worker_settings

__all__ = ["METAVARS", "SECTIONS", "run_worker", "worker"]

# The worker's settings under the headings ``vespid worker --help`` shows.
SECTIONS: Final[dict[str, tuple[str, ...]]] = {
    "Backend": (
        "backend_url", "backend", "healthcheck_endpoint", "model_name", "handlers",
        "raw_requests", "backend_read_timeout_s", "backend_health_url",
    ),
    "Readiness and benchmark": (
        "ready_poll_s", "ready_wait_s", "health_interval_s", "model_log", "log_loaded",
        "log_error", "log_info", "benchmark", "max_perf", "rebenchmark", "benchmark_key",
        "cache_dir",
    ),
    "Load": ("allow_parallel", "max_concurrency", "max_wait_time_s"),
    "Listening": (
        "host", "worker_port", "worker_http_port", "public_ipaddr", "public_port", "use_ssl",
        "ssl_cert_file", "ssl_key_file", "max_body_bytes", "max_header_bytes", "max_headers",
        "max_request_line_bytes", "header_timeout_s", "body_timeout_s", "max_connections",
    ),
    "Signatures": ("unsecured", "public_key_file", "request_key", "accept_vast_signatures"),
    "Reports to the autoscaler": ("report_addr", "master_token", "container_id"),
    "Sessions and the null worker": (
        "max_sessions", "max_session_lifetime_s", "on_close_hosts",
        "max_on_close_payload_bytes", "null_control_port",
    ),
    "Tasks": (
        "tasks", "gpus", "task_queue_size", "task_timeout_s", "task_stop_grace_s",
        "task_answer_max_bytes", "docker",
    ),
    "Parking and orphan safety": (
        "sleep", "sleep_path", "wake_path", "wake_timeout_s", "orphan_timeout_s", "model_pid",
        "model_pid_start",
    ),
    "Logging": ("log_level",),
}  # fmt: skip


# Metavars that say more than a field's type and name do.
METAVARS: Final = {
    "benchmark": "MODULE:FUNCTION",
    "handlers": "MODULE:ATTR,...",
    "healthcheck_endpoint": "/PATH",
    "sleep_path": "/PATH",
    "wake_path": "/PATH",
    "host": "ADDRESS",
    "public_ipaddr": "ADDRESS",
    "request_key": "BASE64",
    "on_close_hosts": "HOST,...",
    "gpus": "GPU,...",
    "log_level": "LEVEL",
    "docker": "COMMAND",
}


def run_worker(overrides: dict[str, Any]) -> None:
    """Load settings (environment, then flags), then serve until SIGINT/SIGTERM."""
    with exit_on_config_error("vespid worker"):
        settings = load_worker_settings(os.environ, overrides, names=flag_names(overrides))
    setup_logging(settings.log_level)
    from vespid.worker.serve import serve

    serve_until_signalled("vespid worker", lambda stop: serve(settings, stop=stop))


@click.command(cls=SectionedCommand, sections=SECTIONS)
@setting_options(WorkerSettings, {"public_port": "VAST_TCP_PORT_<WORKER_PORT>"}, METAVARS)
def worker(**flags: Any) -> None:
    """Run a worker beside a model server (see docs/worker.md)."""
    run_worker(flags)
