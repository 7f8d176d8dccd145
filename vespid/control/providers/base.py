"""The provider interface: how the control plane starts, stops and watches workers.

A provider turns "one more worker for endpoint E" into running processes somewhere
(local processes, a Ray cluster, a cloud) and reports whether they still run. The
control plane learns readiness and load from the worker's own reports, not from the
provider.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field
from typing import Any

from vespid.control.models import EndpointConfig

__all__ = ["Provider", "RunState", "WorkerHandle", "WorkerOrder"]


class RunState(enum.Enum):
    RUNNING = "running"  # the worker's processes are alive
    EXITED = "exited"  # they stopped or crashed on their own


@dataclass(frozen=True)
class WorkerOrder:
    """One worker the control plane asks a provider for.

    ``request_key`` (base64), when not empty, is the worker's HMAC key: it must reach the
    worker as ``VESPID_REQUEST_KEY`` and nothing else."""

    worker_id: int
    endpoint: EndpointConfig
    report_addr: str  # the control plane's URL, for the worker's reports
    master_token: str
    request_key: str = ""


@dataclass
class WorkerHandle:
    """What a provider knows about one worker it started."""

    worker_id: int
    endpoint: str
    url: str  # where clients reach the worker
    started_at: float
    gpus: tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)  # provider-specific, kept in the store


class Provider(abc.ABC):
    """Starts and stops workers. Implementations must never block the event loop."""

    name: str = "provider"

    @abc.abstractmethod
    async def start(self, order: WorkerOrder) -> WorkerHandle:
        """Launch a worker; return once its processes are started (not ready)."""

    async def open(self) -> None:
        """Get ready to start workers (e.g. connect to a cluster); called once at start."""
        return

    def free_gpus(self) -> int | None:
        """GPUs free to hand to new workers now; None when the provider does not limit
        workers by GPUs (a CPU machine, or one that finds machines on demand)."""
        return None

    @abc.abstractmethod
    async def stop(self, handle: WorkerHandle) -> None:
        """Stop a worker and everything it started; idempotent."""

    @abc.abstractmethod
    def state(self, handle: WorkerHandle) -> RunState:
        """Whether the worker's processes still run."""

    @abc.abstractmethod
    async def cleanup(self, info: dict[str, Any]) -> None:
        """Stop what a previous run of the control plane left (from ``WorkerHandle.info``)."""

    async def close(self) -> None:
        """Stop every worker this provider started."""
        return
