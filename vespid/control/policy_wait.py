"""The router's wait estimate for one worker: the one place the router's is written (the
slot arithmetic, ``slot_wait_s``, is shared with the worker's own 429 check).

The router (``router.py``, through ``Fleet``), the policy (``policy_stages.is_routable``)
and ``vespid simulate`` all call ``queue_time_s``; ``accepts_work`` then compares it with
``max_queue_time``.

Little's law: a request routed to a worker waits for the work not yet started ahead of it
to be served at the worker's throughput. A worker with a concurrency limit tells waiting
work apart from running work (its report's ``slots`` > 0, with ``free_slots`` and
``waiting_load``); for it the estimate is

    wait = (waiting + routed_waiting + next_slot) / perf

* ``waiting``: its reported ``waiting_load``;
* ``routed_waiting``: the load routed to it since that report that found no free slot.
  With ``n`` requests routed since and ``f`` slots free at the report, the first ``f`` of
  them started; the rest wait, counted at the routed requests' mean cost,
  ``routed_load × (n − f) / n``;
* ``next_slot``: when no slot is left, a new request also waits for one to free, about
  the time to serve one running request's cost: ``running / slots``, where ``running`` is
  ``cur_load`` less what waits. With a slot free it starts at once: 0.

Worked example, perf 237, 8 slots, 8 streams of 200 running (1600), nothing waiting:
today's ``cur_load / perf`` reads 6.75 s; here 200 / 237 = 0.84 s. A report of 7 such
streams and 1 free slot, then two requests of 100 routed: one starts, one waits, and
(100 + 1500 / 8) / 237 = 1.21 s.

A worker that does not tell them apart (``slots`` 0: no concurrency limit, or a worker
that does not report it) keeps the estimate of every request at its full cost until it
ends, ``cur_load / perf`` (300 workload at 100/s -> 3 s).
"""

from __future__ import annotations

from vespid.control.policy_types import WorkerView
from vespid.protocol.wait import slot_wait_s

__all__ = ["queue_time_s", "routed_waiting", "worker_perf"]


def worker_perf(worker: WorkerView, default_perf: float) -> float:
    """``max_perf`` once benchmarked (and positive), else ``default_perf``."""
    if worker.max_perf is not None and worker.max_perf > 0:
        return worker.max_perf
    return default_perf


def routed_waiting(worker: WorkerView) -> float:
    """The load routed since the worker's last report that found no free slot there.

    Examples: 3 routed (300) with 1 slot free -> 200; 1 routed with 1 free -> 0;
    2 routed (100) with none free -> 100.
    """
    routed = worker.routed_requests
    if routed <= worker.free_slots or worker.routed_load <= 0:
        return 0.0
    return worker.routed_load * (routed - max(worker.free_slots, 0)) / routed


def queue_time_s(worker: WorkerView, default_perf: float) -> float:
    """The router's wait estimate in seconds (the module docstring has the formula).

    Examples at perf 100: no slots reported, 300 load -> 3 s; 8 slots, 3 free,
    nothing routed since -> 0 s; 8 slots all running 800, 100 waiting -> (100 + 100) / 100 = 2 s.
    """
    perf = worker_perf(worker, default_perf)
    if worker.slots <= 0:
        return worker.cur_load / perf
    waiting = max(worker.waiting_load, 0.0) + routed_waiting(worker)
    free = worker.free_slots - worker.routed_requests
    return slot_wait_s(waiting, worker.cur_load - waiting, worker.slots, free, perf)
