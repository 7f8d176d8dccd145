"""The provider interface: how the control plane starts, stops and watches workers.

A provider turns "one more worker for endpoint E" into running processes somewhere
(local processes, a Ray cluster, a cloud) and reports whether they still run. The
control plane learns readiness and load from the worker's own reports, not from the
provider.

Free GPUs have one owner, the provider's ``GpuLedger``: the provider writes its own
count of free GPUs there, the autoscaler promises GPUs to each start it decides on, and
the provider settles the promise once its count shows them taken. Example: 2 GPUs free;
the autoscaler promises 1 to a start, so 1 is free; Ray places the worker and counts 1
free, the promise is settled: still 1 free, not 0.

Parking and waking are the worker's own routes (``POST /vespid/park`` and ``/vespid/wake``
with its MASTER_TOKEN), so every provider has them as ``worker_sleep_call`` makes them.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp

from vespid.control.models import EndpointConfig
from vespid.errors import VespidError
from vespid.protocol.wire import PARK_PATH, WAKE_PATH

__all__ = [
    "SLEEP_CALL_TIMEOUT_S",
    "GpuLedger",
    "GpuPromise",
    "Provider",
    "RunState",
    "WorkerHandle",
    "WorkerOrder",
    "worker_sleep_call",
]

# How long a worker may take to park or wake (a model server moving its weights).
SLEEP_CALL_TIMEOUT_S: Final = 120.0


class RunState(enum.Enum):
    RUNNING = "running"  # the worker's processes are alive
    EXITED = "exited"  # they stopped or crashed on their own


class GpuLedger:
    """Free GPUs as the provider counts them, less those promised to starts that the
    count does not show yet. Event-loop only."""

    def __init__(self) -> None:
        self._counted: int | None = None  # the provider's count; None: not limited by GPUs
        self._promised = 0

    @property
    def limited(self) -> bool:
        """Whether the provider limits workers by GPUs."""
        return self._counted is not None

    def count(self, free: int | None) -> None:
        """The provider's own count of free GPUs (None: it does not limit by GPUs)."""
        self._counted = free

    def promise(self, gpus: int) -> GpuPromise:
        """Hold ``gpus`` for a start until it is settled (none when not limited)."""
        held = gpus if self.limited else 0
        self._promised += held
        return GpuPromise(self, held)

    def _release(self, gpus: int) -> None:
        self._promised -= gpus

    def free(self) -> int | None:
        """GPUs a new start may have now; None when workers are not limited by GPUs."""
        if self._counted is None:
            return None
        return max(0, self._counted - self._promised)


@dataclass
class GpuPromise:
    """GPUs held in a ledger for one start; ``settle`` (idempotent) lets them go once the
    provider's count shows them taken, or the start failed."""

    ledger: GpuLedger
    gpus: int
    settled: bool = False

    def settle(self) -> None:
        if not self.settled:
            self.settled = True
            self.ledger._release(self.gpus)


@dataclass(frozen=True)
class WorkerOrder:
    """One worker the control plane asks a provider for.

    ``request_key`` (base64), when not empty, is the worker's HMAC key: it must reach the
    worker as ``VESPID_REQUEST_KEY`` and nothing else. ``gpus``, when given, is the
    promise the autoscaler made this start in the provider's ledger: the provider
    settles it once its count of free GPUs shows the worker's."""

    worker_id: int
    endpoint: EndpointConfig
    report_addr: str  # the control plane's URL, for the worker's reports
    master_token: str  # the worker's own report token (``ControlKeys.worker_token``)
    request_key: str = ""
    gpus: GpuPromise | None = None
    # Seconds the worker runs on with its reports unanswered before it stops itself and
    # its model server (``VESPID_ORPHAN_TIMEOUT``); 0: never.
    orphan_timeout_s: float = 0.0


@dataclass
class WorkerHandle:
    """What a provider knows about one worker it started."""

    worker_id: int
    endpoint: str
    url: str  # where clients reach the worker
    started_at: float
    gpus: tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)  # provider-specific, kept in the store
    revision: int = 0  # the endpoint template revision it was started on


class Provider(abc.ABC):
    """Starts and stops workers. Implementations must never block the event loop."""

    name: str = "provider"

    def __init__(self) -> None:
        self.gpus = GpuLedger()

    @abc.abstractmethod
    async def start(self, order: WorkerOrder) -> WorkerHandle:
        """Launch a worker; return once its processes are started (not ready)."""

    async def open(self) -> None:
        """Get ready to start workers (e.g. connect to a cluster); called once at start."""
        return

    def free_gpus(self) -> int | None:
        """GPUs free to hand to new workers now, promises deducted; None when the provider
        does not limit workers by GPUs (a CPU machine, or one that finds machines on
        demand)."""
        return self.gpus.free()

    @abc.abstractmethod
    async def stop(self, handle: WorkerHandle) -> None:
        """Stop a worker and everything it started; idempotent."""

    @abc.abstractmethod
    def state(self, handle: WorkerHandle) -> RunState:
        """Whether the worker's processes still run."""

    @abc.abstractmethod
    async def cleanup(self, info: dict[str, Any]) -> None:
        """Stop what a previous run of the control plane left (from ``WorkerHandle.info``)
        and was not adopted; only processes provably that run's."""

    async def adopt(self, handle: WorkerHandle) -> bool:
        """Take back a worker an earlier run of the control plane started (its handle as
        the store kept it): True if its processes still run and are provably the ones
        that run started, and this provider now watches and stops them as its own; False
        (nothing taken) otherwise. The default adopts nothing."""
        return False

    async def release(self) -> None:
        """Close, letting every worker run on for the next run to adopt (where ``close``
        stops them). The default, for a provider whose workers cannot outlive it, is
        ``close``."""
        await self.close()

    async def park(self, handle: WorkerHandle, token: str) -> None:
        """Park a worker (``token``: its MASTER_TOKEN): it takes no work and its model
        server sleeps where it can; returns once it is asleep. The default asks the worker
        (``POST /vespid/park``)."""
        await worker_sleep_call(handle, token, "park")

    async def wake(self, handle: WorkerHandle, token: str) -> None:
        """Wake a parked worker (``token``: its MASTER_TOKEN); return once it can serve.
        The default asks the worker (``POST /vespid/wake``)."""
        await worker_sleep_call(handle, token, "wake")

    async def close(self) -> None:
        """Stop every worker this provider started."""
        return


async def worker_sleep_call(
    handle: WorkerHandle, token: str, action: str, *, timeout_s: float = SLEEP_CALL_TIMEOUT_S
) -> float:
    """``POST {url}/vespid/<action>`` (park or wake) with the worker's token; the worker's
    ``took_s``. ``VespidError`` with the worker's own message if it refuses, cannot be
    reached, or does not answer within ``timeout_s``."""
    path = PARK_PATH if action == "park" else WAKE_PATH
    url = f"{handle.url.rstrip('/')}{path}"
    where = f"worker {handle.worker_id} ({url})"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http,
            http.post(url, headers={"Authorization": f"Bearer {token}"}) as resp,
        ):
            body = await resp.json(content_type=None)
            status = resp.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise VespidError(f"{where}: no answer to {action} ({type(exc).__name__}: {exc})") from None
    if status >= 300 or not isinstance(body, dict):
        message = body.get("error") if isinstance(body, dict) else body
        raise VespidError(f"{where} refused to {action}: {status} {message}")
    took_s = body.get("took_s")
    return float(took_s) if isinstance(took_s, int | float) else 0.0
