"""The Ray provider: workers on the nodes of a Ray cluster, for when one machine is not enough.

Each worker is a detached, named Ray actor (``WorkerHost``, ``providers/ray_host.py``;
named ``vespid-worker-<id>`` in the provider's namespace, ``vespid`` unless
``VESPID_RAY_NAMESPACE`` says) that Ray places on a node with the ``gpus_per_worker`` GPUs
it asks for, spreading workers over the nodes that fit them; the actor launches the model
server and the ``vespid worker`` there, exactly as the local provider does on its own
machine (``providers/launch.py``), with Ray's ``CUDA_VISIBLE_DEVICES``. The worker listens
on the node's address as Ray knows it and reports to the control plane's URL, so on a
real cluster set ``VESPID_PUBLIC_URL`` (and ``VESPID_CONTROL_HOST``) to an address the
nodes reach; every node needs vespid (and the model server) installed, as Ray runs the
actor from the installed package.

``VESPID_RAY_ADDRESS`` names the cluster to join (``auto``, ``ray://...`` or
``host:port``); unset, the control plane starts a Ray instance of its own on this
machine, and its workers listen on the control plane's address (127.0.0.1 by default).
Liveness is polled once a second (``state`` answers from that, never blocking); free
GPUs come from the cluster's available resources, so the autoscaler starts no worker
that no node could take. Stopping a worker asks its actor to stop the processes
(SIGTERM, then SIGKILL after 5 s), then kills the actor; processes die with their actor
too, so a crashed actor or node leaves none behind.

The actors outlive the control plane (``release`` only disconnects): the next run finds
each by name and ``adopt`` takes it back if it is the very actor the store recorded (its
actor id) and its worker runs; ``cleanup`` stops the recorded actors not adopted, and
nothing else. An actor ends once its worker exits (a worker whose control plane stays
away stops itself after ``VESPID_ORPHAN_TIMEOUT``), so none is left behind. A Ray
instance the control plane started itself ends with it, and its workers too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from vespid.control.providers.base import Provider, RunState, WorkerHandle, WorkerOrder
from vespid.control.providers.launch import LaunchSpec
from vespid.control.providers.ray_host import WorkerHost, ray_module
from vespid.errors import ConfigError

__all__ = ["RAY_NAMESPACE", "RayProvider", "actor_name"]

log = logging.getLogger("vespid.control")

RAY_NAMESPACE: Final = "vespid"
POLL_INTERVAL_S: Final = 1.0
CALL_TIMEOUT_S: Final = 15.0


async def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """ConfigError unless a ``host:port`` (or ``ray://host:port``) cluster address accepts a
    TCP connection: ray.init waits minutes on an address where nothing listens."""
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" and the like: Ray finds the cluster itself
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(host or "127.0.0.1", int(port))
    except (OSError, TimeoutError) as exc:
        why = str(exc) or "no answer in time"
        raise ConfigError(
            f"VESPID_RAY_ADDRESS: nothing answers at {address} ({why}); "
            "start the cluster's head (ray start --head) or fix the address"
        ) from None
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


def actor_name(worker_id: int) -> str:
    """The Ray actor of a worker, by name (in the ``vespid`` namespace)."""
    return f"vespid-worker-{worker_id}"


class RayProvider(Provider):
    name = "ray"

    def __init__(
        self,
        log_dir: Path,
        *,
        address: str | None,
        local_host: str | None = "127.0.0.1",
        namespace: str = RAY_NAMESPACE,
        start_timeout_s: float = 120.0,
        init_options: Mapping[str, Any] | None = None,
    ) -> None:
        """``namespace``: the Ray namespace the workers' named, detached actors live in
        (one per control plane sharing a cluster). ``init_options`` go to ``ray.init`` as
        they are (e.g. ``num_gpus`` to declare GPUs of a local instance)."""
        super().__init__()
        self.log_dir = log_dir
        self.address = address
        self.local_host = local_host
        self.namespace = namespace
        self.start_timeout_s = start_timeout_s
        self.init_options = dict(init_options or {})
        self._actors: dict[int, Any] = {}
        self._alive: dict[int, bool] = {}
        self._connected = False
        self._started_ray = False
        self._lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None

    # -- the cluster ---------------------------------------------------------

    async def open(self) -> None:
        await self._connect()

    async def _connect(self) -> Any:
        ray = await asyncio.to_thread(ray_module)  # the first import reads hundreds of files
        async with self._lock:
            if not self._connected:
                kwargs: dict[str, Any] = {"namespace": self.namespace, "log_to_driver": False,
                                          "include_dashboard": False}  # fmt: skip
                if self.address is not None:
                    await _check_reachable(self.address)
                    kwargs["address"] = self.address
                elif self.local_host is not None:
                    kwargs["_node_ip_address"] = self.local_host
                kwargs.update(self.init_options)
                began = time.monotonic()
                try:
                    await asyncio.to_thread(ray.init, **kwargs)
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    raise ConfigError(f"VESPID_RAY_ADDRESS: Ray did not start ({exc})") from None
                self._started_ray = self.address is None
                self._connected = True
                await self._refresh_gpus(ray)
                self._watcher = asyncio.create_task(self._watch(ray))
                log.info(
                    "Ray %s in %.1f s: %s",
                    "started" if self._started_ray else "joined",
                    time.monotonic() - began,
                    await asyncio.to_thread(ray.cluster_resources),
                )
        return ray

    async def _refresh_gpus(self, ray: Any) -> None:
        total = (await asyncio.to_thread(ray.cluster_resources)).get("GPU", 0)
        available = (await asyncio.to_thread(ray.available_resources)).get("GPU", 0)
        self.gpus.count(int(available) if total else None)

    async def _watch(self, ray: Any) -> None:
        """Poll every actor's liveness, and the free GPUs, once a second."""
        while True:
            await asyncio.sleep(POLL_INTERVAL_S)
            for worker_id, actor in list(self._actors.items()):
                try:
                    alive = await asyncio.wait_for(actor.alive.remote(), CALL_TIMEOUT_S)
                except asyncio.CancelledError:
                    raise
                except Exception:  # the actor died (RayActorError) or hangs
                    alive = False
                if worker_id in self._actors:
                    self._alive[worker_id] = bool(alive)
            with contextlib.suppress(Exception):
                await self._refresh_gpus(ray)

    # -- the Provider interface --------------------------------------------------

    async def start(self, order: WorkerOrder) -> WorkerHandle:
        # The GPUs stay promised in the ledger (the autoscaler's promise, or one made here
        # for a caller without one) until Ray's count of free GPUs shows them taken.
        endpoint = order.endpoint
        gpus = endpoint.template.gpus_per_worker if self.gpus.limited else 0
        promise = order.gpus or self.gpus.promise(gpus)
        try:
            ray = await self._connect()
            # On a Ray instance of its own every node is this machine: the workers listen
            # where the control plane does; on a cluster, at their node's address.
            host = self.local_host if self._started_ray and self.local_host else ""
            spec = LaunchSpec(order, self.log_dir, host=host)
            actor, placed = await self._place(ray, spec, gpus)
        finally:
            try:
                if self._connected:
                    await self._refresh_gpus(ray_module())  # a placed actor's GPUs are taken now
            except Exception as exc:
                log.warning("could not read Ray's free GPUs: %s", exc)
            finally:
                promise.settle()
        worker_id = order.worker_id
        name = actor_name(worker_id)
        self._actors[worker_id] = actor
        self._alive[worker_id] = True
        info = {**placed["info"], "ray_actor": name, "ray_actor_id": placed["actor_id"],
                "ray_namespace": self.namespace, "node": placed["node"],
                "ray_node_id": placed["node_id"]}  # fmt: skip
        handle = WorkerHandle(
            worker_id=worker_id,
            endpoint=endpoint.name,
            url=placed["url"],
            started_at=time.time(),
            gpus=tuple(placed["gpus"]),
            info=info,
        )
        log.info(
            "started worker %d for %s on Ray node %s at %s",
            worker_id, endpoint.name, placed["node"], handle.url,
        )  # fmt: skip
        return handle

    async def _place(self, ray: Any, spec: LaunchSpec, gpus: int) -> tuple[Any, dict[str, Any]]:
        """Create the worker's actor and have it launch the worker; (actor, what it says).
        The actor is detached (it outlives this control plane, for the next run to adopt)
        and named in the namespace; workers spread over the nodes that fit them."""
        host_class = ray.remote(WorkerHost)
        options = {"name": actor_name(spec.order.worker_id), "namespace": self.namespace,
                   "lifetime": "detached", "scheduling_strategy": "SPREAD",
                   "num_cpus": 0, "num_gpus": gpus, "max_restarts": 0}  # fmt: skip
        actor = await asyncio.to_thread(lambda: host_class.options(**options).remote())
        try:
            placed = await asyncio.wait_for(actor.start.remote(spec), self.start_timeout_s)
        except BaseException as exc:
            await asyncio.to_thread(ray.kill, actor)
            if isinstance(exc, TimeoutError):
                raise ConfigError(
                    f"no Ray node took worker {spec.order.worker_id} of "
                    f"{spec.order.endpoint.name} within {self.start_timeout_s:g} s "
                    f"(it asks for {gpus} GPU(s))"
                ) from None
            raise
        return actor, placed

    async def stop(self, handle: WorkerHandle) -> None:
        actor = self._actors.pop(handle.worker_id, None)
        self._alive.pop(handle.worker_id, None)
        if actor is not None:
            await self._stop_actor(actor)

    async def _stop_actor(self, actor: Any) -> None:
        ray = ray_module()
        with contextlib.suppress(Exception):  # already dead: nothing left to stop
            await asyncio.wait_for(actor.stop.remote(), CALL_TIMEOUT_S)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(ray.kill, actor)

    def state(self, handle: WorkerHandle) -> RunState:
        return RunState.RUNNING if self._alive.get(handle.worker_id) else RunState.EXITED

    async def adopt(self, handle: WorkerHandle) -> bool:
        """Watch a worker an earlier run started again: its actor, found by name in the
        namespace, must be the very actor that run made (its id) and its processes run."""
        actor = await self._own_actor(handle.info)
        if actor is None:
            return False
        self._actors[handle.worker_id] = actor
        self._alive[handle.worker_id] = True
        log.info("adopted worker %d of %s (Ray actor %s on %s)", handle.worker_id,
                 handle.endpoint, handle.info["ray_actor"], handle.info.get("node"))  # fmt: skip
        return True

    async def cleanup(self, info: dict[str, Any]) -> None:
        """Stop the detached actor (and the worker) of a worker left by an earlier run and
        not adopted, if it is provably that run's (its id); any other actor of that name
        is left alone."""
        actor = await self._own_actor(info, alive_only=False)
        if actor is not None:
            await self._stop_actor(actor)
            log.info("stopped Ray actor %s left by an earlier run", info["ray_actor"])

    async def _own_actor(self, info: dict[str, Any], *, alive_only: bool = True) -> Any:
        """The actor ``info`` (a stored handle's) names, if it is the one recorded (same
        id) and, with ``alive_only``, its worker still runs; None otherwise."""
        name, actor_id = info.get("ray_actor"), info.get("ray_actor_id")
        namespace = info.get("ray_namespace", self.namespace)
        if not (isinstance(name, str) and isinstance(actor_id, str)):
            return None  # an actor of an older run, not detached: gone with its driver
        ray = await self._connect()
        try:
            actor = await asyncio.to_thread(ray.get_actor, name, namespace)
            said = await asyncio.wait_for(actor.describe.remote(), CALL_TIMEOUT_S)
        except asyncio.CancelledError:
            raise
        except Exception:  # no such actor (ValueError), or it died or hangs
            return None
        if said.get("actor_id") != actor_id:
            log.warning("Ray actor %s is not the one an earlier run started: left alone", name)
            return None
        return actor if said.get("alive") or not alive_only else None

    async def release(self) -> None:
        """Disconnect, leaving every worker's detached actor running for the next run to
        adopt. A Ray instance this provider started itself ends here, and its workers
        with it."""
        self._actors.clear()
        self._alive.clear()
        await self._disconnect()

    async def close(self) -> None:
        actors = list(self._actors.values())
        self._actors.clear()
        self._alive.clear()
        await asyncio.gather(*(self._stop_actor(a) for a in actors))
        await self._disconnect()

    async def _disconnect(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._connected:
            await asyncio.to_thread(ray_module().shutdown)
            self._connected = False
