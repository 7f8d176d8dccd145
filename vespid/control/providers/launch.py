"""Launching one worker on the machine this runs on: its model server (or sidecar) and the
``vespid worker`` before it, as child processes with their own ports.

Shared by the providers: the local provider calls it in the control plane's process,
the Ray provider in an actor on the node Ray picked. The worker listens on ``host`` (the
address clients reach it at) and reports to ``report_addr``; the model server listens on
127.0.0.1 beside it, and is started first: the worker gets its pid and start time
(``VESPID_MODEL_PID``, ``VESPID_MODEL_PID_START``) and its orphan bound
(``VESPID_ORPHAN_TIMEOUT``), so a worker whose control plane is gone for good stops
itself and its model server. Children lead their own process groups; they die with the
process that launched them only if ``LaunchSpec.die_with_launcher`` says so.

Children do not inherit the launching process's environment (which may hold
``VESPID_ADMIN_KEY`` or a cloud token): they get ``SAFE_ENV``'s variables from it
(``vespid.servers.process``), then what the template names (``env`` for the worker,
``model_env`` for the model server), then what launch sets (ports, report address, the
worker's own token and key, GPUs).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vespid.control.models import EndpointConfig
from vespid.control.providers.base import WorkerOrder
from vespid.servers.process import (
    ChildProcess,
    WatchedProcess,
    free_port,
    process_start_time,
    safe_environment,
)

__all__ = [
    "LaunchSpec",
    "Launched",
    "launch",
    "template_key",
]


def _start_times(procs: list[ChildProcess | WatchedProcess]) -> list[int | None]:
    return [process_start_time(p.pgid) if p.pgid else None for p in procs]


async def _start(
    spec: LaunchSpec, name: str, argv: list[str], env: dict[str, str], log: str
) -> ChildProcess | WatchedProcess:
    """One process, started: a child that dies with its launcher, or a detached one."""
    log_path = spec.log_dir / log
    if not spec.die_with_launcher:
        return await WatchedProcess.spawn(name, argv, env=env, log_path=log_path)
    proc = ChildProcess(
        name, argv, env=env, log_path=log_path, die_with_parent=True, inherit_env=False
    )
    await proc.start()
    return proc


def _model_argv(spec: LaunchSpec, fill: dict[str, Any]) -> list[str]:
    """The template's model server (or, beside a null worker, sidecar) command, filled in."""
    argv = [part.format(**fill) for part in spec.order.endpoint.template.model_command or ()]
    if argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv


def template_key(endpoint: EndpointConfig) -> str:
    """One key per endpoint template: workers of one template share a cached benchmark."""
    spec = json.dumps(endpoint.template.model_dump(mode="json"), sort_keys=True)
    return f"{endpoint.name}:{hashlib.sha256(spec.encode()).hexdigest()[:16]}"


@dataclass(frozen=True)
class LaunchSpec:
    """A worker order, and where on this machine to launch it."""

    order: WorkerOrder
    log_dir: Path
    host: str = "127.0.0.1"  # where the worker listens, and the address in its url
    gpus: tuple[str, ...] = ()
    # Whether the processes die with the one that launches them (PR_SET_PDEATHSIG): not
    # when that is the control plane, whose restart must not stop them (local provider).
    die_with_launcher: bool = True


@dataclass
class Launched:
    """A worker's processes, started, and what the control plane keeps of them."""

    url: str
    procs: list[ChildProcess | WatchedProcess]
    info: dict[str, Any] = field(default_factory=dict)


async def launch(spec: LaunchSpec) -> Launched:
    """Start the worker's processes; returns once they are started (not ready)."""
    order = spec.order
    template = order.endpoint.template
    worker_port, http_port = free_port(), free_port()
    gpu_env = {"CUDA_VISIBLE_DEVICES": ",".join(spec.gpus)} if spec.gpus else {}
    inherited = safe_environment(os.environ)
    env = {
        **inherited,
        # The endpoint's max_queue_time is the worker's MAX_WAIT_TIME unless the template
        # says; workers of one template share one cached benchmark though their model
        # servers get new ports.
        "MAX_WAIT_TIME": str(order.endpoint.scaling.max_queue_time),
        "VESPID_BENCHMARK_KEY": template_key(order.endpoint),
        **template.env,
        "WORKER_PORT": str(worker_port),
        "WORKER_HTTP_PORT": str(http_port),
        "VESPID_HOST": spec.host,
        "PUBLIC_IPADDR": spec.host,
        "REPORT_ADDR": order.report_addr,
        "CONTAINER_ID": str(order.worker_id),
        "MASTER_TOKEN": order.master_token,
        "VESPID_ACCEPT_VAST_SIGNATURES": "false",
        "VESPID_ORPHAN_TIMEOUT": f"{order.orphan_timeout_s:g}",
        **gpu_env,
    }
    if order.request_key:
        env["VESPID_REQUEST_KEY"] = order.request_key
    await asyncio.to_thread(spec.log_dir.mkdir, mode=0o700, parents=True, exist_ok=True)
    fill: dict[str, Any] = {"worker_port": worker_port, "gpus": ",".join(spec.gpus)}
    null = template.model_command is None or template.env.get("BACKEND") == "null"
    if null:
        # A null worker; a model_command then runs beside it as a sidecar (e.g. a
        # queue consumer) that releases sessions on the worker's control port.
        control_port = free_port()
        env["BACKEND"] = "null"
        env["NULL_CONTROL_PORT"] = str(control_port)
        fill["control_port"] = control_port
    else:
        fill["model_port"] = free_port()
        env["BACKEND_URL"] = f"http://127.0.0.1:{fill['model_port']}"
    procs: list[ChildProcess | WatchedProcess] = []
    worker_id = order.worker_id
    try:
        if template.model_command:
            role = "sidecar" if null else "model server"
            server_env = {**inherited, **template.model_env, **gpu_env}
            server = await _start(
                spec, f"{role} {worker_id}", _model_argv(spec, fill), server_env,
                f"model-{worker_id}.log",
            )  # fmt: skip
            procs.append(server)
            # The worker stops its model server with itself once orphaned, but only if
            # that pid is still this process (its start time).
            env["VESPID_MODEL_PID"] = str(server.pid)
            env["VESPID_MODEL_PID_START"] = str(
                await asyncio.to_thread(process_start_time, server.pgid or 0)
            )
        argv = [sys.executable, "-m", "vespid.worker"]
        procs.append(
            await _start(spec, f"worker {worker_id}", argv, env, f"worker-{worker_id}.log")
        )
    except BaseException:
        for proc in reversed(procs):
            await proc.stop()
        raise
    return Launched(
        url=f"http://{spec.host}:{worker_port}",
        procs=procs,
        info={
            "pgids": [p.pgid for p in procs],
            # With the pgids: a later run signals a group only if its leader is the same
            # process (a pid reused by someone else's program has another start time).
            "pgid_starts": await asyncio.to_thread(_start_times, procs),
            "gpus": list(spec.gpus),
            "worker_port": worker_port,
            "model_port": fill.get("model_port"),
        },
    )
