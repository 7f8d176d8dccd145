"""The pool of GPU slots tasks run on, and the FIFO queue of tasks waiting for one."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vespid.errors import Overloaded
from vespid.tasks.metrics import TaskMetrics
from vespid.tasks.process import TaskProcess

__all__ = ["GpuPool", "Lease"]

log = logging.getLogger("vespid.tasks")


@dataclass(eq=False, slots=True)
class Lease:
    """A slot given to one task, perhaps with an idle session program on it."""

    device: str | None
    process: TaskProcess | None = None  # an idle session of the same model: reused
    evict: TaskProcess | None = None  # an idle session of another model: stopped first


class GpuPool:
    """Free slots, idle session programs, and the FIFO queue. Event loop only."""

    def __init__(
        self,
        devices: Sequence[str | None],
        *,
        queue_size: int,
        max_wait_s: float,
        on_park: Callable[[TaskProcess], None],
        on_take: Callable[[TaskProcess], None],
        metrics: TaskMetrics,
    ) -> None:
        self.devices = tuple(devices)
        self.queue_size = queue_size
        self.max_wait_s = max_wait_s
        self._free: deque[str | None] = deque(devices)
        self._idle: dict[TaskProcess, None] = {}  # oldest first
        self._waiters: deque[tuple[str, asyncio.Future[Lease]]] = deque()
        self._on_park = on_park
        self._on_take = on_take
        self._metrics = metrics

    @property
    def free(self) -> list[str | None]:
        return list(self._free)

    @property
    def idle(self) -> list[TaskProcess]:
        return list(self._idle)

    @property
    def queued(self) -> int:
        return len(self._waiters)

    @property
    def busy(self) -> int:
        return len(self.devices) - len(self._free) - len(self._idle)

    def _busy(self) -> tuple[str, str]:
        """What a slot is called here, and how to say that all are busy."""
        if self.devices == (None,):
            return "task slot", "the one task slot (no GPUs) is busy"
        n = len(self.devices)
        return "GPU", f"all {n} GPUs are busy" if n > 1 else "the one GPU is busy"

    async def acquire(self, model: str) -> Lease:
        """A slot for ``model``, first come first served; Overloaded (429) when the queue
        is full or no slot comes free within ``max_wait_s``."""
        if not self._waiters and (lease := self._take(model)) is not None:
            return lease
        if len(self._waiters) >= self.queue_size:
            self._metrics.refused.labels("queue_full").inc()
            raise Overloaded(
                f"{self._busy()[1]} and the task queue is full "
                f"(VESPID_TASK_QUEUE_SIZE={self.queue_size}); retry later or on another worker",
                queue_size=self.queue_size,
            )
        future: asyncio.Future[Lease] = asyncio.get_running_loop().create_future()
        waiter = (model, future)
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.max_wait_s):
                return await future
        except BaseException as exc:
            if future.done() and not future.cancelled():
                self.give_back(future.result())  # handed over just as we gave up
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                self._metrics.refused.labels("wait_limit").inc()
                slot, busy = self._busy()
                raise Overloaded(
                    f"no {slot} came free within MAX_WAIT_TIME ({self.max_wait_s:g} s; {busy}); "
                    "retry later or on another worker",
                    max_wait_s=self.max_wait_s,
                ) from None
            raise

    def release(self, device: str | None) -> None:
        """A slot whose program has stopped is free again."""
        self._free.append(device)
        self._dispatch()

    def park(self, process: TaskProcess) -> None:
        """A session program waits, on its slot, for its next task."""
        self._idle[process] = None
        self._on_park(process)
        self._dispatch()

    def unpark(self, process: TaskProcess) -> bool:
        """Take an idle program out to stop it; False when a task got it first."""
        return self._idle.pop(process, False) is None

    def give_back(self, lease: Lease) -> None:
        """Undo ``acquire`` for a task that will not run after all."""
        idle = lease.process or lease.evict
        if idle is not None:
            self.park(idle)
        else:
            self.release(lease.device)

    def _take(self, model: str) -> Lease | None:
        for process in self._idle:
            if process.preset.name == model:
                del self._idle[process]
                self._on_take(process)
                return Lease(process.device, process=process)
        if self._free:
            return Lease(self._free.popleft())
        if self._idle:
            oldest = next(iter(self._idle))
            del self._idle[oldest]
            self._on_take(oldest)
            return Lease(oldest.device, evict=oldest)
        return None

    def _dispatch(self) -> None:
        while self._waiters:
            model, future = self._waiters[0]
            if future.done():  # its task was cancelled; it cleans up after itself
                self._waiters.popleft()
                continue
            lease = self._take(model)
            if lease is None:
                return
            self._waiters.popleft()
            future.set_result(lease)
