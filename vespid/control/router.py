"""The router: pick a worker for each request, sign its auth_data, or queue it.

``POST /route/`` with ``{"endpoint", "api_key", "cost", "request_idx"}``. A ready
worker whose estimated wait, ``(cur_load + load routed since its last report) /
max_perf``, is within the endpoint's ``max_queue_time`` is a candidate; the one
with the lowest wait wins. Example: worker A with cur_load 200 at 100 workload/s
waits 2 s, worker B with 50 at 100 waits 0.5 s: B gets the request, and its routed
load grows by the request's cost until its next report.

With no candidate (or while others wait) the request joins the endpoint's queue
(bounded, 429 beyond) and the answer carries only its ``request_idx``: the client asks
again with it, and any waiter that asks while a worker can take it gets it. A waiter
that stops asking for ``ABANDON_AFTER_S`` is dropped.

Per endpoint the router also tallies what it did (arrivals, routes, refusals, and the
time routed requests spent queued) until the history takes the tally each second.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

from vespid.control.fleet import Fleet, WorkerRecord
from vespid.control.models import EndpointConfig
from vespid.control.policy_stages import accepts_work
from vespid.errors import Overloaded
from vespid.protocol.signing import Signer

__all__ = ["RouteTally", "Router", "Waiter"]

ABANDON_AFTER_S: Final = 30.0


@dataclass
class Waiter:
    request_idx: int
    cost: float
    enqueued_at: float
    last_seen_at: float


@dataclass
class RouteTally:
    """What the router did for one endpoint since the tally was last taken."""

    arrived: int = 0  # new requests (a queued request asking again is not new)
    routed: int = 0
    rejected: int = 0
    wait_total_s: float = 0.0  # time the routed requests spent queued (0 for direct routes)
    wait_max_s: float = 0.0


class Router:
    """Routing decisions and the per-endpoint wait queues. Event-loop only."""

    def __init__(self, fleet: Fleet, signer: Signer, *, max_queued: int) -> None:
        self.fleet = fleet
        self.signer = signer
        self.max_queued = max_queued
        self.queues: dict[str, OrderedDict[int, Waiter]] = {}
        self.next_request_idx = 1
        self.next_reqnum = 1
        self.decisions = {"routed": 0, "queued": 0, "rejected": 0}
        self.tallies: dict[str, RouteTally] = {}

    def tally(self, endpoint: str) -> RouteTally:
        return self.tallies.setdefault(endpoint, RouteTally())

    def take_tally(self, endpoint: str) -> RouteTally:
        """The tally since the last take, and a fresh one from now on."""
        return self.tallies.pop(endpoint, None) or RouteTally()

    def oldest_wait_s(self, endpoint: str, now: float | None = None) -> float | None:
        """How long the request at the head of the queue has waited; None if none waits."""
        q = self.queues.get(endpoint)
        if not q:
            return None
        now = time.monotonic() if now is None else now
        return now - next(iter(q.values())).enqueued_at

    def queue(self, endpoint: str) -> OrderedDict[int, Waiter]:
        return self.queues.setdefault(endpoint, OrderedDict())

    def queued_load(self, endpoint: str) -> tuple[float, int]:
        q = self.queue(endpoint)
        return sum(w.cost for w in q.values()), len(q)

    def candidates(self, endpoint: EndpointConfig) -> list[WorkerRecord]:
        limit = endpoint.scaling.max_queue_time
        ready = [
            w for w in self.fleet.of(endpoint.name) if accepts_work(w.phase, w.est_wait_s(), limit)
        ]
        return sorted(ready, key=lambda w: (w.est_wait_s(), w.worker_id))

    def drop_abandoned(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        dropped = 0
        for q in self.queues.values():
            for idx in [i for i, w in q.items() if now - w.last_seen_at > ABANDON_AFTER_S]:
                del q[idx]
                dropped += 1
        return dropped

    def route(self, endpoint: EndpointConfig, cost: float, request_idx: int) -> dict[str, Any]:
        """A signed auth_data for a worker, or a 'queued' answer with the request_idx."""
        now = time.monotonic()
        q = self.queue(endpoint.name)
        tally = self.tally(endpoint.name)
        waiter = q.get(request_idx) if request_idx else None
        if waiter is None:
            request_idx = self.next_request_idx
            self.next_request_idx += 1
            self.fleet.note_arrival(endpoint.name, cost)
            tally.arrived += 1
        else:
            waiter.last_seen_at = now
        candidates = self.candidates(endpoint)
        # A new request queues behind any waiter; a waiter that asks while a worker can
        # take it gets it at once. Held calls are woken in the order they waited, so the
        # queue drains in about arrival order without a slow poller blocking the rest.
        if candidates and (waiter is not None or not q):
            waited_s = 0.0
            if waiter is not None:
                del q[request_idx]
                waited_s = now - waiter.enqueued_at
            tally.routed += 1
            tally.wait_total_s += waited_s
            tally.wait_max_s = max(tally.wait_max_s, waited_s)
            return self._routed(endpoint, candidates[0], cost, request_idx)
        if waiter is None:
            if len(q) >= self.max_queued:
                self.decisions["rejected"] += 1
                tally.rejected += 1
                self.fleet.note_rejection(endpoint.name, cost)
                raise Overloaded(
                    f"endpoint {endpoint.name!r} has {len(q)} requests queued (the limit); "
                    "retry later",
                    queued=len(q),
                    limit=self.max_queued,
                )
            q[request_idx] = Waiter(request_idx, cost, now, now)
            self.decisions["queued"] += 1
        position = list(q).index(request_idx)
        return {
            "endpoint": endpoint.name,
            "status": f"queued: {position} ahead, no worker free yet",
            "request_idx": request_idx,
        }

    def _routed(
        self, endpoint: EndpointConfig, worker: WorkerRecord, cost: float, request_idx: int
    ) -> dict[str, Any]:
        worker.note_routed(cost)
        reqnum = self.next_reqnum
        self.next_reqnum += 1
        self.decisions["routed"] += 1
        cost_value: float | int = int(cost) if math.isfinite(cost) and cost == int(cost) else cost
        return self.signer.auth_data(
            url=worker.url,
            cost=cost_value,
            endpoint=endpoint.name,
            reqnum=reqnum,
            request_idx=request_idx,
            worker_key=worker.request_key,
        )
