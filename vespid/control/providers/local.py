"""The local provider: each worker is a model server process and a ``vespid worker``
process on this machine, with their own ports.

GPUs listed in the control plane's ``CUDA_VISIBLE_DEVICES`` are handed out
``gpus_per_worker`` at a time through the children's ``CUDA_VISIBLE_DEVICES``.
The processes are spawned detached, each leading its own process group (stopping a
worker stops everything it spawned), and watched through pidfds. They outlive the
control plane: a control plane that stops leaves them
running (``release``) unless told to stop them, and one that crashes cannot stop them;
the next run adopts each one whose process group leaders are still the processes the
store names (pid and start time, from ``/proc``), and stops (``cleanup``) what is left of
the others. A worker whose control plane never comes back stops itself and its model
server after ``VESPID_ORPHAN_TIMEOUT`` (set by ``launch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vespid.control.providers.base import Provider, RunState, WorkerHandle, WorkerOrder
from vespid.control.providers.launch import LaunchSpec, launch
from vespid.errors import ConfigError
from vespid.servers.process import WatchedProcess, process_start_time

__all__ = ["LocalProvider"]

log = logging.getLogger("vespid.control")


class LocalProvider(Provider):
    name = "local"

    def __init__(self, log_dir: Path, environ: Mapping[str, str]) -> None:
        super().__init__()
        self.log_dir = log_dir
        visible = environ.get("CUDA_VISIBLE_DEVICES", "")
        self._all_gpus = tuple(g.strip() for g in visible.split(",") if g.strip())
        self._free_gpus = list(self._all_gpus)
        self._procs: dict[int, list[WatchedProcess]] = {}
        self._count_gpus()

    def _count_gpus(self) -> None:
        self.gpus.count(len(self._free_gpus) if self._all_gpus else None)

    def _take_gpus(self, count: int) -> tuple[str, ...]:
        if count == 0 or not self._all_gpus:
            return ()  # a CPU machine: the worker runs without GPUs
        if len(self._free_gpus) < count:
            raise ConfigError(
                f"gpus_per_worker={count} but only {len(self._free_gpus)} GPU(s) are free"
            )
        taken, self._free_gpus = self._free_gpus[:count], self._free_gpus[count:]
        self._count_gpus()
        return tuple(taken)

    def _return_gpus(self, gpus: tuple[str, ...]) -> None:
        self._free_gpus.extend(g for g in gpus if g not in self._free_gpus)
        self._count_gpus()

    async def start(self, order: WorkerOrder) -> WorkerHandle:
        endpoint = order.endpoint
        try:
            gpus = self._take_gpus(endpoint.template.gpus_per_worker)
        finally:
            if order.gpus is not None:  # taken (or refused) at once: the count shows it
                order.gpus.settle()
        spec = LaunchSpec(order, self.log_dir, gpus=gpus, die_with_launcher=False)
        try:
            launched = await launch(spec)
        except BaseException:
            self._return_gpus(gpus)
            raise
        # Launched detached: every process is watched (pidfd), none is an asyncio child.
        self._procs[order.worker_id] = [p for p in launched.procs if isinstance(p, WatchedProcess)]
        handle = WorkerHandle(
            worker_id=order.worker_id,
            endpoint=endpoint.name,
            url=launched.url,
            started_at=time.time(),
            gpus=gpus,
            info=launched.info,
        )
        log.info("started worker %d for %s at %s", order.worker_id, endpoint.name, handle.url)
        return handle

    async def stop(self, handle: WorkerHandle) -> None:
        procs = self._procs.pop(handle.worker_id, [])
        # The worker first (it stops taking requests), then its model server.
        for proc in reversed(procs):
            await proc.stop()
        self._return_gpus(handle.gpus)

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
        """SIGTERM the process groups an earlier run recorded, each only if its leader is
        still the process that run started (same pid, same start time)."""
        pgids, starts = info.get("pgids", []), info.get("pgid_starts", [])
        if not isinstance(pgids, list) or not isinstance(starts, list):
            return
        for pgid, started in zip(pgids, starts, strict=False):
            if not (isinstance(pgid, int) and pgid > 1 and isinstance(started, int)):
                continue
            now = await asyncio.to_thread(process_start_time, pgid)
            if now is None:
                continue  # gone with the earlier run
            if now != started:
                log.info("process %d is not the worker an earlier run started; left alone", pgid)
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGTERM)
                log.info("stopped process group %d left by an earlier run", pgid)

    async def adopt(self, handle: WorkerHandle) -> bool:
        """Watch a worker an earlier run started again, if each of its process group
        leaders is still the process that run started; its GPUs are taken again."""
        pgids, starts = handle.info.get("pgids"), handle.info.get("pgid_starts")
        if not (isinstance(pgids, list) and isinstance(starts, list) and pgids):
            return False
        if len(pgids) != len(starts) or not set(handle.gpus) <= set(self._free_gpus):
            return False
        procs: list[WatchedProcess] = []
        for pgid, started in zip(pgids, starts, strict=True):
            proc = None
            if isinstance(pgid, int) and pgid > 1 and isinstance(started, int):
                proc = await WatchedProcess.open(f"worker {handle.worker_id}", pgid, started)
            if proc is None:
                for taken in procs:
                    taken.release()
                return False
            procs.append(proc)
        self._procs[handle.worker_id] = procs
        self._free_gpus = [g for g in self._free_gpus if g not in handle.gpus]
        self._count_gpus()
        log.info("adopted worker %d of %s at %s", handle.worker_id, handle.endpoint, handle.url)
        return True

    async def release(self) -> None:
        """Let every worker run on (the next run adopts them)."""
        for group in self._procs.values():
            for proc in group:
                proc.release()
        self._procs.clear()

    async def close(self) -> None:
        procs = [p for group in self._procs.values() for p in group]
        self._procs.clear()
        await asyncio.gather(*(p.stop() for p in procs))
