"""The age of the oldest request not yet started, the clock the demand's horizon runs on.

A request can wait in two places: the router's queue (``ScalingSnapshot.oldest_wait_s``)
and, once routed, a worker's own queue for a backend slot (``WorkerView.oldest_wait_s``,
from the worker's ``waiting_age`` report). The router keeps routing to a worker until its
estimated wait reaches ``max_queue_time``, so a burst can wait at the workers with the
router's queue empty; the policy's queue age is the oldest of both. Pure functions, no
clock: the caller passes the times.
"""

from __future__ import annotations

from collections.abc import Iterable

from vespid.control.policy_types import WorkerView

__all__ = ["aged_wait_s", "queue_age_s"]


def aged_wait_s(reported_s: float, waiting_load: float, since_report_s: float) -> float:
    """A worker's oldest wait now: the age its last report gave, plus the time since that
    report while anything waits (the same request, or an older one, still waits); 0 when
    nothing waits. Both the control plane's fleet and ``vespid simulate`` age it here.

    Examples: 3 s reported 2 s ago with 500 waiting -> 5 s; nothing waiting -> 0 s; an
    age reported with nothing waiting (a stale field) -> 0 s.
    """
    if waiting_load <= 0:
        return 0.0
    return max(reported_s, 0.0) + max(since_report_s, 0.0)


def queue_age_s(router_wait_s: float, live: Iterable[WorkerView]) -> float:
    """How long the oldest request not yet started has waited: the oldest of the router's
    queue (``router_wait_s``) and the queues of the ``live`` workers (whose waiting load
    is the backlog; a DRAINING worker serves out its own queue and is not passed). A
    worker holding sessions counts its whole load as occupancy, so its queue is left out.

    Examples: router's queue 2 s, live workers' 7 s and 4 s -> 7 s; nothing waiting -> 0 s.
    """
    worker_ages = (w.oldest_wait_s for w in live if w.sessions == 0)
    return max(router_wait_s, *worker_ages, 0.0)
