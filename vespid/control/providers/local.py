"""The local provider: each worker is a model server process and a ``vespid worker``
process on this machine, with their own ports.

GPUs listed in the control plane's ``CUDA_VISIBLE_DEVICES`` are handed out
``gpus_per_worker`` at a time through the children's ``CUDA_VISIBLE_DEVICES``.
Children lead their own process groups (stopping a worker stops everything it
spawned) and are asked to die with the control plane, so a crash leaves no orphan;
a restart also stops any process group recorded by the previous run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vespid.control.models import EndpointConfig
from vespid.control.providers.base import Provider, RunState, WorkerHandle
from vespid.errors import ConfigError
from vespid.servers.process import ChildProcess, free_port

__all__ = ["LocalProvider"]

log = logging.getLogger("vespid.control")


def _template_key(endpoint: EndpointConfig) -> str:
    spec = json.dumps(endpoint.template.model_dump(mode="json"), sort_keys=True)
    return f"{endpoint.name}:{hashlib.sha256(spec.encode()).hexdigest()[:16]}"


class LocalProvider(Provider):
    name = "local"

    def __init__(self, log_dir: Path, environ: Mapping[str, str]) -> None:
        self.log_dir = log_dir
        visible = environ.get("CUDA_VISIBLE_DEVICES", "")
        self._all_gpus = tuple(g.strip() for g in visible.split(",") if g.strip())
        self._free_gpus = list(self._all_gpus)
        self._procs: dict[int, list[ChildProcess]] = {}

    def free_gpus(self) -> int | None:
        return len(self._free_gpus) if self._all_gpus else None

    def _take_gpus(self, count: int) -> tuple[str, ...]:
        if count == 0 or not self._all_gpus:
            return ()  # a CPU machine: the worker runs without GPUs
        if len(self._free_gpus) < count:
            raise ConfigError(
                f"gpus_per_worker={count} but only {len(self._free_gpus)} GPU(s) are free"
            )
        taken, self._free_gpus = self._free_gpus[:count], self._free_gpus[count:]
        return tuple(taken)

    async def start(
        self,
        worker_id: int,
        endpoint: EndpointConfig,
        *,
        report_addr: str,
        master_token: str,
        request_key: str = "",
    ) -> WorkerHandle:
        template = endpoint.template
        gpus = self._take_gpus(template.gpus_per_worker)
        worker_port, http_port = free_port(), free_port()
        gpu_env = {"CUDA_VISIBLE_DEVICES": ",".join(gpus)} if gpus else {}
        env = {
            # The endpoint's max_queue_time is the worker's MAX_WAIT_TIME unless the template
            # says; workers of one template share one cached benchmark though their model
            # servers get new ports.
            "MAX_WAIT_TIME": str(endpoint.scaling.max_queue_time),
            "VESPID_BENCHMARK_KEY": _template_key(endpoint),
            **template.env,
            "WORKER_PORT": str(worker_port),
            "WORKER_HTTP_PORT": str(http_port),
            "VESPID_HOST": "127.0.0.1",
            "PUBLIC_IPADDR": "127.0.0.1",
            "REPORT_ADDR": report_addr,
            "CONTAINER_ID": str(worker_id),
            "MASTER_TOKEN": master_token,
            "VESPID_ACCEPT_VAST_SIGNATURES": "false",
            **gpu_env,
        }
        if request_key:
            env["VESPID_REQUEST_KEY"] = request_key
        procs: list[ChildProcess] = []
        await asyncio.to_thread(self.log_dir.mkdir, parents=True, exist_ok=True)
        fill = {"worker_port": worker_port, "gpus": ",".join(gpus)}
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
        if template.model_command:
            argv = [part.format(**fill) for part in template.model_command]
            if argv[0] in ("python", "python3"):
                argv[0] = sys.executable
            role = "sidecar" if null else "model server"
            procs.append(
                ChildProcess(
                    f"{role} {worker_id}",
                    argv,
                    env={**template.model_env, **gpu_env},
                    log_path=self.log_dir / f"model-{worker_id}.log",
                    die_with_parent=True,
                )
            )
        procs.append(
            ChildProcess.python(
                f"worker {worker_id}",
                "-m",
                "vespid.worker",
                env=env,
                log_path=self.log_dir / f"worker-{worker_id}.log",
                die_with_parent=True,
            )
        )
        for proc in procs:
            await proc.start()
        self._procs[worker_id] = procs
        handle = WorkerHandle(
            worker_id=worker_id,
            endpoint=endpoint.name,
            url=f"http://127.0.0.1:{worker_port}",
            started_at=time.time(),
            gpus=gpus,
            info={
                "pgids": [p.pgid for p in procs],
                "gpus": list(gpus),
                "worker_port": worker_port,
                "model_port": fill.get("model_port"),
            },
        )
        log.info("started worker %d for %s at %s", worker_id, endpoint.name, handle.url)
        return handle

    async def stop(self, handle: WorkerHandle) -> None:
        procs = self._procs.pop(handle.worker_id, [])
        # The worker first (it stops taking requests), then its model server.
        for proc in reversed(procs):
            await proc.stop()
        self._free_gpus.extend(g for g in handle.gpus if g not in self._free_gpus)

    def state(self, handle: WorkerHandle) -> RunState:
        procs = self._procs.get(handle.worker_id)
        if not procs or any(p.returncode is not None for p in procs):
            return RunState.EXITED
        return RunState.RUNNING

    def kill(self, handle: WorkerHandle) -> None:
        """SIGKILL a worker's processes at once (fault tests, the status page)."""
        for proc in self._procs.get(handle.worker_id, []):
            proc.kill()

    async def cleanup(self, info: dict[str, Any]) -> None:
        for pgid in info.get("pgids", []):
            if isinstance(pgid, int) and pgid > 1:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGTERM)
                    log.info("stopped process group %d left by an earlier run", pgid)

    async def close(self) -> None:
        procs = [p for group in self._procs.values() for p in group]
        self._procs.clear()
        await asyncio.gather(*(p.stop() for p in procs))
