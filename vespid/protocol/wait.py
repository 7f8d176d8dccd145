"""The wait estimate by Little's law, shared by the worker (its 429 check) and the control
plane (its router): a request waits for the work not started ahead of it, then, once no
slot is free, for one to free (about one running request's cost), at the worker's
throughput. The formula and a worked example are in docs/autoscaler.md ("Routing").
"""

from __future__ import annotations

__all__ = ["slot_wait_s"]


def slot_wait_s(waiting: float, running: float, slots: int, free_slots: int, perf: float) -> float:
    """Seconds a new request waits on a worker with ``slots`` backend slots, ``free_slots``
    of them free, ``waiting`` workload not started and ``running`` workload in its slots,
    serving ``perf`` workload/s: ``waiting / perf`` while a slot is free, else
    ``(waiting + running / slots) / perf``.

    Examples at perf 100 and 8 slots: 3 free -> 0 s; none free, 800 running -> 1 s; and
    100 waiting -> 2 s.
    """
    waiting = max(waiting, 0.0)
    if free_slots > 0 or slots <= 0:
        return waiting / perf
    return (waiting + max(running, 0.0) / slots) / perf
