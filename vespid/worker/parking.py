"""Parking: the worker's side of ``POST /vespid/park`` and ``POST /vespid/wake``.

Park: the worker takes no new request (each gets a JSON 503 saying it is parked), waits
for the requests already admitted to finish (a model server put to sleep mid-request
breaks them: vLLM's does), then puts its model server to sleep through the
``VESPID_SLEEP`` hook. Wake: the hook wakes the server, and the worker is ready again
once the backend's health check passes (the benchmark figure is kept). One park or
wake runs at a time; parking a parked worker or waking a ready one answers at once.
"""

from __future__ import annotations

import asyncio
import logging
import time

from vespid.errors import HTTPFacingError, NotReady
from vespid.worker.admission import Admission
from vespid.worker.lifecycle import Lifecycle, WorkerState
from vespid.worker.sleep import SleepHook

__all__ = ["Parking"]

log = logging.getLogger("vespid.worker")


class Parking:
    """Parks and wakes the worker; its state lives in the lifecycle (PARKED)."""

    def __init__(
        self, lifecycle: Lifecycle, admission: Admission, hook: SleepHook, wake_timeout_s: float
    ) -> None:
        self._lifecycle = lifecycle
        self._admission = admission
        self._hook = hook
        self._wake_timeout_s = wake_timeout_s
        self._lock = asyncio.Lock()
        self.asleep = False  # the hook put the model server to sleep

    async def park(self) -> float:
        """Park the worker; the seconds it took (draining included)."""
        started = time.monotonic()
        async with self._lock:
            life = self._lifecycle
            if life.state is not WorkerState.PARKED:
                if life.state is not WorkerState.READY:
                    raise NotReady(
                        f"worker is {life.state.value}, not ready: only a ready worker parks; "
                        "stop it instead, or park it once it is ready",
                        state=life.state.value,
                    )
                life.park()
                await self._admission.drained()
            if not self.asleep:
                await self._hook.sleep()
                self.asleep = True
            took = time.monotonic() - started
            log.info("worker parked in %.3f s", took)
            return took

    async def wake(self) -> float:
        """Wake the worker; the seconds until its backend's health check passed."""
        started = time.monotonic()
        async with self._lock:
            if self._lifecycle.parked:
                if self.asleep:
                    await self._hook.wake()
                    self.asleep = False
                try:
                    async with asyncio.timeout(self._wake_timeout_s):
                        await self._lifecycle.unpark()
                except TimeoutError:
                    raise _WakeTimeout(
                        f"the backend did not pass its health check within "
                        f"VESPID_WAKE_TIMEOUT_S ({self._wake_timeout_s:g} s) of waking: "
                        f"{self._lifecycle.waiting_for}"
                    ) from None
            took = time.monotonic() - started
            log.info("worker woken in %.3f s", took)
            return took


class _WakeTimeout(HTTPFacingError):
    status_code = 504
    code = "wake_timeout"
