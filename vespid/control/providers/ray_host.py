"""The Ray actor that runs one worker on its node (``WorkerHost``), for the Ray provider.

The actor launches the model server and the ``vespid worker`` on the node Ray placed it
on (``providers/launch.py``, with Ray's ``CUDA_VISIBLE_DEVICES``); the processes die
with the actor (``PR_SET_PDEATHSIG``). The actor is detached (it outlives the control
plane that made it, which adopts it again after a restart), so it watches its processes
itself: once any of them exits (the worker stopped itself because its control plane
stopped answering, ``VESPID_ORPHAN_TIMEOUT``; or the model server died) it stops the rest
and ends, so no actor outlives its worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from typing import Any, Final

from vespid.control.providers.launch import Launched, LaunchSpec, launch
from vespid.errors import ConfigError

__all__ = ["WorkerHost", "ray_module"]

log = logging.getLogger("vespid.control")

WATCH_INTERVAL_S: Final = 0.5


def ray_module() -> Any:
    """The ray module, imported on first use: only the Ray provider needs it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "VESPID_PROVIDER=ray: the ray package is not installed (pip install 'vespid[ray]')"
        ) from None
    return ray


def _node_address(ray: Any) -> str:
    """The address Ray knows this node by."""
    node_id = ray.get_runtime_context().get_node_id()
    for node in ray.nodes():
        if node.get("NodeID") == node_id:
            return str(node["NodeManagerAddress"])
    return str(ray.util.get_node_ip_address())


class WorkerHost:
    """The Ray actor that runs one worker's processes on its node."""

    def __init__(self) -> None:
        self._launched: Launched | None = None
        self._watcher: asyncio.Task[None] | None = None

    async def start(self, spec: LaunchSpec) -> dict[str, Any]:
        """Launch the worker on this node: its url, the node's address and Ray id, the
        GPUs, what the control plane keeps of it, and this actor's id (what proves it is
        this one)."""
        ray = ray_module()
        host = spec.host or await asyncio.to_thread(_node_address, ray)
        gpus = tuple(str(g) for g in ray.get_gpu_ids())
        self._launched = await launch(dataclasses.replace(spec, host=host, gpus=gpus))
        self._watcher = asyncio.create_task(self._end_with_worker(self._launched))
        return {"url": self._launched.url, "node": host, "gpus": list(gpus),
                "node_id": ray.get_runtime_context().get_node_id(),
                "info": self._launched.info, "actor_id": self.actor_id()}  # fmt: skip

    def actor_id(self) -> str:
        """This actor's id, unique in its cluster: a later actor of the same name has
        another."""
        return str(ray_module().get_runtime_context().get_actor_id())

    async def alive(self) -> bool:
        """Whether every process of the worker still runs."""
        launched = self._launched
        return launched is not None and all(p.returncode is None for p in launched.procs)

    async def describe(self) -> dict[str, Any]:
        """This actor's id and whether its worker still runs (what adoption checks)."""
        return {"actor_id": self.actor_id(), "alive": await self.alive()}

    async def stop(self) -> None:
        """Stop the worker first (it stops taking requests), then its model server."""
        if self._launched is not None:
            for proc in reversed(self._launched.procs):
                await proc.stop()

    async def _end_with_worker(self, launched: Launched) -> None:
        """Once any process exits, stop the others and end this actor."""
        # ChildProcess offers a return code to poll, nothing to await.
        while all(p.returncode is None for p in launched.procs):  # noqa: ASYNC110
            await asyncio.sleep(WATCH_INTERVAL_S)
        await self.stop()
        ray = ray_module()
        log.info("worker processes of actor %s exited: ending it", self.actor_id())
        with contextlib.suppress(Exception):
            me = ray.get_runtime_context().current_actor
            await asyncio.to_thread(ray.kill, me, no_restart=True)
