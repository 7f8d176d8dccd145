"""The autoscaler loop: per endpoint, snapshot -> ``decide`` -> ``rollout.roll`` -> the
decision carried out through the provider, every ``scale_interval_s`` and at once when
woken (a request queued, an endpoint changed or deleted).

Carrying a decision out: ``drain`` takes workers out of routing (DRAINING, no provider
call); ``stop`` stops through the provider; ``park`` and ``wake`` call the provider with
the worker's own token (a parking worker is DRAINING until the provider returns, then
PARKED; a waking one is WAKING, then READY, or ERRORED if the wake fails); ``start``
launches new workers on the revision ``roll`` names (the endpoint's, or while a rollout
is halted the last good one's template). Every action goes to the scaling log, the
history and the metrics.

Before deciding, each step retires what is broken: workers silent for too long
(``Fleet.mark_stale``), workers whose processes exited (the provider says so), workers of
deleted endpoints, and queued requests nobody polls any more. Everything else (backoff,
ready timeout, GPU fitting) is the pure policy's; this loop only carries decisions out,
keeps the scaling log, and logs what the policy held back when it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

from vespid.control.fleet import Fleet, WorkerRecord
from vespid.control.history import History
from vespid.control.keys import ControlKeys
from vespid.control.metrics import ControlMetrics
from vespid.control.models import EndpointConfig
from vespid.control.policy import Decision, PolicyState, ScalingSnapshot, WorkerPhase, decide
from vespid.control.providers.base import Provider, RunState, WorkerHandle, WorkerOrder
from vespid.control.rollouts import Rollouts
from vespid.control.router import Router
from vespid.control.settings import ControlSettings
from vespid.control.store import Store
from vespid.protocol.signing import encode_request_key

__all__ = ["SCALING_LOG_KEPT", "Autoscaler"]

log = logging.getLogger("vespid.control")

SCALING_LOG_KEPT: Final = 200  # scaling actions kept for the status page


class Autoscaler:
    """The loop and the workers it starts and stops. Event-loop only."""

    def __init__(
        self,
        settings: ControlSettings,
        store: Store,
        provider: Provider,
        endpoints: MutableMapping[str, EndpointConfig],
        fleet: Fleet,
        router: Router,
        history: History,
        metrics: ControlMetrics,
        keys: ControlKeys,
        *,
        url: str,
        next_worker_id: int,
    ) -> None:
        self.settings = settings
        self.store = store
        self.provider = provider
        self.endpoints = endpoints  # the control plane's live mapping
        self.fleet = fleet
        self.router = router
        self.history = history
        self.metrics = metrics
        self.keys = keys
        self.url = url
        self.next_worker_id = next_worker_id
        self.policy_states: dict[str, PolicyState] = {}
        self.rollouts = Rollouts(store)
        self._in_transit: set[int] = set()  # workers being parked or woken
        # Wakes the /route/ calls held for an endpoint (the route API's notify_capacity): a
        # woken worker takes the queue at once, not at its next report.
        self.on_capacity: Callable[[str], Awaitable[None]] | None = None
        self.scaling_log: list[dict[str, Any]] = []  # the latest actions, oldest first
        self._launching: dict[str, int] = {}  # endpoint -> starts asked of the provider
        self._short_of_gpus: dict[str, int] = {}  # endpoint -> starts held (logged once)
        self._failing: dict[str, str] = {}  # endpoint -> the error its last step raised
        self._busy: set[asyncio.Task[None]] = set()
        self._adopted: dict[int, float] = {}  # adopted worker -> when, until it reports
        self._kick = asyncio.Event()  # set to decide now rather than at the next tick

    # -- the loop ------------------------------------------------------------------

    def wake(self) -> None:
        """Decide now rather than at the next tick."""
        self._kick.set()

    async def run(self) -> None:
        """Step every ``scale_interval_s`` (or when woken) until cancelled."""
        while True:
            try:
                await self.step()
            except Exception:  # the loop must outlive any one bad decision
                log.exception("autoscaler step failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.scale_interval_s):
                    await self._kick.wait()
            self._kick.clear()

    async def step(self) -> None:
        """One step: retire broken workers, then snapshot -> decide -> act, per endpoint."""
        self.fleet.mark_stale()
        self.router.drop_abandoned()
        self._retire()
        for endpoint in list(self.endpoints.values()):
            if self._awaiting_adopted(endpoint.name):
                continue
            try:
                decision, ordered = self.rollouts.step(endpoint, *self._decide(endpoint))
                self._act(endpoint, decision, ordered)
            except Exception as exc:  # one endpoint's failure never stops the others'
                self._note_failure(endpoint.name, exc)
            else:
                self._failing.pop(endpoint.name, None)
        await self.rollouts.save()

    def _note_failure(self, endpoint: str, exc: Exception) -> None:
        """Log a failing endpoint's step once per distinct error, not at every tick."""
        what = f"{type(exc).__name__}: {exc}"
        if self._failing.get(endpoint) != what:
            self._failing[endpoint] = what
            log.error("scaling %s failed (%s); the other endpoints scale on", endpoint, what)

    def _retire(self) -> None:
        """Stop workers of deleted endpoints; mark those whose processes exited."""
        for record in list(self.fleet.workers.values()):
            if record.handle.endpoint not in self.endpoints:
                self._spawn_stop(record.worker_id, "endpoint deleted")
            elif (
                record.phase is not WorkerPhase.ERRORED
                and self.provider.state(record.handle) is RunState.EXITED
            ):
                self.fleet.mark_errored(record.worker_id, "process exited")

    def _decide(self, endpoint: EndpointConfig) -> tuple[ScalingSnapshot, Decision]:
        name = endpoint.name
        queued_load, queued = self.router.queued_load(name)
        self.fleet.note_waiting(name, queued)
        snapshot = self.fleet.snapshot(
            endpoint,
            queued_load=queued_load,
            queued_requests=queued,
            free_gpus=self.provider.free_gpus(),
            launching=self._launching.get(name, 0),
            oldest_wait_s=self.router.oldest_wait_s(name) or 0.0,
        )
        before = self.policy_states.get(name, PolicyState())
        decision, after = decide(snapshot, before)
        self.policy_states[name] = after
        if after.start_after is not None and after.start_after != before.start_after:
            log.warning(
                "%d worker(s) of %s in a row failed before they were ready; next start in %.0f s",
                after.start_failures, name, after.start_after - snapshot.now,
            )  # fmt: skip
        return snapshot, decision

    def rollout_status(self, endpoint: EndpointConfig) -> dict[str, Any]:
        """How the rollout of ``endpoint``'s current revision goes."""
        return self.rollouts.status(endpoint, [w.view() for w in self.fleet.of(endpoint.name)])

    def _act(self, endpoint: EndpointConfig, decision: Decision, ordered: EndpointConfig) -> None:
        """Carry ``decision`` out; new workers start as ``ordered`` (template, revision)."""
        timeout_s = endpoint.template.ready_timeout
        for worker_id in decision.timed_out:
            self.fleet.mark_errored(int(worker_id), f"not ready within {timeout_s:g} s")
        for worker_id in decision.stop:
            self._spawn_stop(int(worker_id), decision.reason)
        for worker_id in decision.drain:
            self._drain(int(worker_id), decision.reason)
        for worker_id in decision.park:
            self._spawn_park(int(worker_id), decision.reason)
        for worker_id in decision.wake:
            self._spawn_wake(int(worker_id), decision.reason)
        self._note_gpu_shortfall(endpoint, decision)
        for _ in range(decision.start):
            self._spawn_start(ordered, decision.reason)

    def _note_gpu_shortfall(self, endpoint: EndpointConfig, decision: Decision) -> None:
        """Log starts held for GPUs when their number changes, not at every tick."""
        short = decision.held_for_gpus
        if short and self._short_of_gpus.get(endpoint.name) != short:
            log.warning(
                "%s wants %d more worker(s) but the free GPUs fit %d (gpus_per_worker=%d); "
                "the rest start when GPUs free up",
                endpoint.name, decision.start + short, decision.start,
                endpoint.template.gpus_per_worker,
            )  # fmt: skip
        if short:
            self._short_of_gpus[endpoint.name] = short
        else:
            self._short_of_gpus.pop(endpoint.name, None)

    def forget(self, endpoint: str) -> None:
        """An endpoint was deleted: its demand books, policy state and queue go with it,
        so one created later under the same name starts from nothing; decide now."""
        self.fleet.books.pop(endpoint, None)
        self.policy_states.pop(endpoint, None)
        self.rollouts.forget(endpoint)
        self.router.queues.pop(endpoint, None)
        self.wake()

    # -- starting and stopping -------------------------------------------------------

    def _log_action(
        self, endpoint: str, action: str, worker_id: int, reason: str, took_s: float | None = None
    ) -> None:
        """One action (start, stop, drain, park, wake) in the metrics, the scaling log,
        the history and the log; ``took_s``: the provider call's time, if it made one."""
        self.metrics.scaling_actions.labels(endpoint, action).inc()
        if took_s is not None:
            self.metrics.provider_seconds.labels(action).observe(took_s)
        self.scaling_log.append(
            {"time": time.time(), "endpoint": endpoint, "action": action,
             "worker_id": worker_id, "reason": reason,
             "provider_s": None if took_s is None else round(took_s, 4)}
        )  # fmt: skip
        del self.scaling_log[:-SCALING_LOG_KEPT]
        self.history.note_action(endpoint, action)
        log.info("%s worker %d of %s: %s", action, worker_id, endpoint, reason)

    def _track(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._busy.add(task)
        task.add_done_callback(self._busy.discard)

    def _spawn_start(self, endpoint: EndpointConfig, reason: str) -> None:
        worker_id = self.next_worker_id
        self.next_worker_id += 1
        self._launching[endpoint.name] = self._launching.get(endpoint.name, 0) + 1
        # Promised now, so the next decision sees them taken even before the provider runs.
        gpus = self.provider.gpus.promise(endpoint.template.gpus_per_worker)
        key = self._request_key(worker_id)
        order = WorkerOrder(
            worker_id,
            endpoint,
            report_addr=self.url,
            master_token=self.keys.worker_token(worker_id),
            request_key=encode_request_key(key) if key else "",
            gpus=gpus,
            orphan_timeout_s=self.settings.orphan_timeout_s,
        )

        async def start() -> None:
            launching = True
            try:
                await self.store.set_meta("next_worker_id", str(self.next_worker_id))
                began = time.monotonic()
                handle = await self.provider.start(order)
                took_s = time.monotonic() - began
                handle.revision = endpoint.revision
                # In the fleet from here on: no longer counted as launching too.
                self.fleet.add(handle).request_key = key
                self._launching[endpoint.name] -= 1
                launching = False
                self._log_action(endpoint.name, "start", worker_id, reason, took_s)
                await self.store.put_worker(handle)
            except Exception:
                log.exception("starting a worker for %s failed", endpoint.name)
            finally:
                gpus.settle()  # the provider settles it once its count shows them taken
                if launching:
                    self._launching[endpoint.name] -= 1

        self._track(start())

    def _drain(self, worker_id: int, reason: str) -> None:
        """Take a worker out of routing; a later decision stops or parks it once empty."""
        record = self.fleet.workers.get(worker_id)
        if record is not None and record.phase is WorkerPhase.READY:
            record.phase = WorkerPhase.DRAINING
            self._log_action(record.handle.endpoint, "drain", worker_id, reason)
            self._keep_draining(worker_id, True)

    def _spawn_park(self, worker_id: int, reason: str) -> None:
        """Park a worker through the provider: DRAINING while it parks, then PARKED."""
        record = self.fleet.workers.get(worker_id)
        if record is not None and worker_id not in self._in_transit:
            self._spawn_sleep_call(record, "park", WorkerPhase.DRAINING, WorkerPhase.PARKED, reason)

    def _spawn_wake(self, worker_id: int, reason: str) -> None:
        """Wake a PARKED worker through the provider (WAKING, then READY); a DRAINING one
        returns to READY at once."""
        record = self.fleet.workers.get(worker_id)
        if record is None or worker_id in self._in_transit:
            return
        if record.phase is WorkerPhase.DRAINING:
            record.phase = WorkerPhase.READY
            self._log_action(record.handle.endpoint, "wake", worker_id, reason)
            self._keep_draining(worker_id, False)
        elif record.phase is WorkerPhase.PARKED:
            self._spawn_sleep_call(record, "wake", WorkerPhase.WAKING, WorkerPhase.READY, reason)

    def _spawn_sleep_call(
        self, record: WorkerRecord, action: str, during: WorkerPhase, after: WorkerPhase,
        reason: str,
    ) -> None:  # fmt: skip
        """``provider.park`` or ``provider.wake`` (``action``) with the worker's token: the
        worker is in phase ``during`` until the call returns, then ``after``; ERRORED (and
        so replaced) if the call fails."""
        worker_id = record.worker_id
        record.phase = during
        self._in_transit.add(worker_id)
        call = self.provider.park if action == "park" else self.provider.wake

        async def run() -> None:
            began = time.monotonic()
            try:
                await call(record.handle, self.keys.worker_token(worker_id))
            except Exception as exc:
                self.fleet.mark_errored(worker_id, f"{action} failed: {exc}")
                log.warning("%s of worker %d failed (%s); it is replaced", action, worker_id, exc)
            else:
                if record.phase is during:
                    record.phase = after
                    if after is WorkerPhase.READY and self.on_capacity is not None:
                        await self.on_capacity(record.handle.endpoint)
                if action == "park":  # no longer draining, if it was
                    self._keep_draining(worker_id, False)
                took_s = time.monotonic() - began
                self._log_action(record.handle.endpoint, action, worker_id, reason, took_s)
            finally:
                self._in_transit.discard(worker_id)

        self._track(run())

    def adopt(self, handle: WorkerHandle, *, draining: bool = False) -> None:
        """A worker an earlier run started, taken back by the provider: in the fleet as
        STARTING until its next report (within a second or so under load) says it is
        ready (or parked), errored if it stays silent (``Fleet.mark_stale``); its ready
        timeout counts from now. One that was ``draining`` is DRAINING again at once
        (never routed to; stopped or parked once empty, or taken back if needed). Its
        endpoint is not scaled until it has reported: no decision rests on a throughput
        or a load not known yet."""
        record = self.fleet.add(handle)
        record.adopted_at = time.time()
        if draining:
            record.phase = WorkerPhase.DRAINING
        record.request_key = self._request_key(handle.worker_id)
        record.last_report_at = self._adopted[handle.worker_id] = time.monotonic()

    def _keep_draining(self, worker_id: int, draining: bool) -> None:
        """Keep in the store whether a worker is draining, for the next run to adopt it so."""

        async def keep() -> None:
            try:
                await self.store.set_draining(worker_id, draining)
            except Exception:  # the worker drains all the same; only a restart forgets it
                log.exception("keeping worker %d's drain in the store failed", worker_id)

        self._track(keep())

    def _request_key(self, worker_id: int) -> bytes | None:
        """The worker's HMAC request key when routes are HMAC-tagged, else None."""
        return self.keys.worker_key(worker_id) if self.settings.request_signing == "hmac" else None

    def _awaiting_adopted(self, endpoint: str) -> bool:
        """Whether a worker of ``endpoint`` adopted at start has not reported since."""
        for worker_id, since in list(self._adopted.items()):
            record = self.fleet.workers.get(worker_id)
            heard = record is not None and (record.last_report_at or since) > since
            if record is None or heard or record.phase is WorkerPhase.ERRORED:
                del self._adopted[worker_id]
            elif record.handle.endpoint == endpoint:
                return True
        return False

    def _spawn_stop(self, worker_id: int, reason: str) -> None:
        record = self.fleet.remove(worker_id)
        if record is None:
            return

        async def stop() -> None:
            began = time.monotonic()
            await self.provider.stop(record.handle)
            took_s = time.monotonic() - began
            await self.store.delete_worker(str(worker_id))
            self._log_action(record.handle.endpoint, "stop", worker_id, reason, took_s)

        self._track(stop())

    async def close(self) -> None:
        """Cancel the starts and stops still running."""
        for task in list(self._busy):
            task.cancel()
        await asyncio.gather(*self._busy, return_exceptions=True)
