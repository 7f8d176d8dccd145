"""A rolling history of every endpoint, one sample a second, for the status page's charts.

A request can wait in three places: the router's queue (no worker could take it yet), its
worker's queue (the worker holds more than it lets through at once), and the model
server behind the worker (a worker with no concurrency limit passes every request on,
and the model server queues what its slots cannot take). The router sees the first; the
workers' ``/delete_requests/`` reports (once a second) give, per finished request,
``entered_queue_at``, ``work_started_at`` and ``work_completed_at``: the second is
``work_started_at - entered_queue_at``, and ``work_completed_at - entered_queue_at`` (the
time in the worker) holds the third.

Each ``interval_s`` the control plane takes one sample per endpoint: the requests that
reached the router since the last sample (per second), how many it routed and refused, how
long the routed ones had waited in its queue, the requests the workers reported finished
and their waits in the workers' queues and times in the workers, the router's queue now,
the workers by state, their load, and the workers started, stopped, drained, parked and
woken. Samples live in a
ring buffer of ``window_s / interval_s`` entries per endpoint (10 minutes by default), so
memory is bounded whatever the traffic. ``GET /api/v0/history`` serves them; with
``?since=T`` only the samples taken after T, so a page polling every second fetches one at
a time. ``recent_waits`` sums up the last seconds for ``GET /api/v0/status``.

Worked example: in one second 3 requests arrive; 2 are routed at once (waited 0 s) and
the third queues; a request that had queued for 2.5 s is routed too. The sample says
``requests_per_s = 3``, ``routed_per_s = 3``, ``queued = 1``, ``wait_mean_s = (2.5 + 0 +
0) / 3 = 0.83`` and ``wait_max_s = 2.5``: the longest wait of the requests routed and of
those still waiting (the third, queued for less than a second so far). In the same second
a worker reports two requests finished that had entered its queue 17 s and 5 s before
their work started, and 18 s and 6 s before it ended: ``finished_per_s = 2``,
``worker_wait_mean_s = 11``, ``worker_wait_max_s = 17``, ``worker_time_mean_s = 12`` and
``worker_time_max_s = 18``. The router's 0.83 s was not the whole wait.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from vespid.control.fleet import Fleet
from vespid.control.policy import WorkerPhase
from vespid.control.router import Router
from vespid.protocol.wire import FinishedRequest

__all__ = ["INTERVAL_S", "RECENT_S", "WINDOW_S", "Finished", "History", "Sample", "Spread"]

INTERVAL_S: Final = 1.0
WINDOW_S: Final = 600.0
RECENT_S: Final = 10.0  # the window of ``recent_waits`` (and of the page's "now" tiles)
# Always in a sample, even at 0, so a chart's series never starts midway.
CHARTED_PHASES: Final = (
    WorkerPhase.STARTING,
    WorkerPhase.READY,
    WorkerPhase.WAKING,
    WorkerPhase.DRAINING,
    WorkerPhase.PARKED,
    WorkerPhase.ERRORED,
)


@dataclass(frozen=True, slots=True)
class Sample:
    """One endpoint over one interval; rates are per second, times in seconds."""

    t: float  # unix time the sample was taken
    requests_per_s: float  # new requests at the router
    routed_per_s: float
    rejected_per_s: float
    queued: int  # requests waiting in the router's queue now
    wait_mean_s: float | None  # mean router-queue wait of the requests routed; None if none
    wait_max_s: float | None  # longest of those and of the requests still waiting
    finished_per_s: float  # requests the workers reported finished (any outcome)
    worker_wait_mean_s: float | None  # their mean wait in the workers' queues; None if none
    worker_wait_max_s: float | None  # the longest of those waits
    worker_time_mean_s: float | None  # their mean time in the worker: queue, model, work
    worker_time_max_s: float | None
    workers: dict[str, int]  # by state: starting, ready, waking, draining, parked, errored
    load: float  # workload in the workers now, plus what was routed since their report
    in_flight: int  # requests (and sessions) the workers hold
    started: int  # workers started in the interval
    stopped: int
    drained: int = 0  # workers taken out of routing in the interval
    parked: int = 0  # workers parked in the interval
    woken: int = 0  # workers woken in the interval (served a burst without a cold start)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Spread:
    """Durations seen over one interval: how many, their sum and the longest."""

    count: int = 0
    total_s: float = 0.0
    longest_s: float = 0.0

    def add(self, start: float | None, end: float | None) -> None:
        """The time from ``start`` to ``end`` (unix times), if the report gave both."""
        if start is not None and end is not None:
            took_s = max(0.0, end - start)
            self.count += 1
            self.total_s += took_s
            self.longest_s = max(self.longest_s, took_s)

    def mean_s(self) -> float | None:
        return round(self.total_s / self.count, 4) if self.count else None

    def max_s(self) -> float | None:
        return round(self.longest_s, 4) if self.count else None


@dataclass(slots=True)
class Finished:
    """The requests one endpoint's workers reported finished since the last sample: how
    long each waited in its worker's queue, and how long it was in the worker in all."""

    count: int = 0
    queued: Spread = field(default_factory=Spread)  # entered_queue_at -> work_started_at
    in_worker: Spread = field(default_factory=Spread)  # entered_queue_at -> work_completed_at

    def add(self, request: FinishedRequest) -> None:
        self.count += 1
        entered = request.get("entered_queue_at")
        self.queued.add(entered, request.get("work_started_at"))
        self.in_worker.add(entered, request.get("work_completed_at"))


class History:
    """Ring buffers of samples, one per endpoint. Event-loop only."""

    def __init__(
        self,
        endpoints: Mapping[str, object],
        fleet: Fleet,
        router: Router,
        *,
        interval_s: float = INTERVAL_S,
        window_s: float = WINDOW_S,
    ) -> None:
        self.endpoints = endpoints  # the control plane's live mapping: sampled by name
        self.fleet = fleet
        self.router = router
        self.interval_s = interval_s
        self.window_s = window_s
        self.size = max(1, round(window_s / interval_s))
        self.series: dict[str, deque[Sample]] = {}
        self._actions: dict[str, Counter[str]] = {}
        self._finished: dict[str, Finished] = {}
        self._last_at: float | None = None

    def note_action(self, endpoint: str, action: str) -> None:
        """A worker was started, stopped, drained, parked or woken (in the next sample)."""
        self._actions.setdefault(endpoint, Counter())[action] += 1

    def note_finished(self, endpoint: str, requests: Iterable[FinishedRequest]) -> None:
        """Requests a worker of ``endpoint`` reported finished (counted in the next sample)."""
        finished = self._finished.setdefault(endpoint, Finished())
        for request in requests:
            finished.add(request)

    def sample(self, now: float | None = None, mono: float | None = None) -> None:
        """Take one sample of every endpoint; forget endpoints that are gone."""
        now = time.time() if now is None else now
        mono = time.monotonic() if mono is None else mono
        dt = self.interval_s if self._last_at is None else max(mono - self._last_at, 1e-3)
        self._last_at = mono
        for name in list(self.endpoints):
            self.series.setdefault(name, deque(maxlen=self.size)).append(
                self._take(name, now, mono, dt)
            )
        for name in [n for n in self.series if n not in self.endpoints]:
            del self.series[name]
            self._actions.pop(name, None)
            self._finished.pop(name, None)

    def _take(self, name: str, now: float, mono: float, dt: float) -> Sample:
        tally = self.router.take_tally(name)
        _, queued = self.router.queued_load(name)
        waits = [w for w in (self.router.oldest_wait_s(name, mono),) if w is not None]
        if tally.routed:
            waits.append(tally.wait_max_s)
        workers = self.fleet.of(name)
        by_state = dict.fromkeys((p.value for p in CHARTED_PHASES), 0)
        for w in workers:
            by_state[w.phase.value] = by_state.get(w.phase.value, 0) + 1
        actions = self._actions.pop(name, Counter())
        done = self._finished.pop(name, None) or Finished()
        return Sample(
            t=round(now, 3),
            requests_per_s=round(tally.arrived / dt, 3),
            routed_per_s=round(tally.routed / dt, 3),
            rejected_per_s=round(tally.rejected / dt, 3),
            queued=queued,
            wait_mean_s=round(tally.wait_total_s / tally.routed, 4) if tally.routed else None,
            wait_max_s=round(max(waits), 4) if waits else None,
            finished_per_s=round(done.count / dt, 3),
            worker_wait_mean_s=done.queued.mean_s(),
            worker_wait_max_s=done.queued.max_s(),
            worker_time_mean_s=done.in_worker.mean_s(),
            worker_time_max_s=done.in_worker.max_s(),
            workers=by_state,
            load=round(sum(w.cur_load + w.routed_load for w in workers), 3),
            in_flight=sum(w.in_flight for w in workers),
            started=actions["start"],
            stopped=actions["stop"],
            drained=actions["drain"],
            parked=actions["park"],
            woken=actions["wake"],
        )

    def to_json(self, since: float | None = None, names: Iterable[str] | None = None) -> Any:
        """``{"interval_s", "window_s", "endpoints": {name: [sample, ...]}}``, oldest first;
        only samples taken after ``since`` if given, only endpoints in ``names`` if given."""
        wanted = set(self.series if names is None else names)
        return {
            "interval_s": self.interval_s,
            "window_s": self.window_s,
            "endpoints": {
                name: [s.to_json() for s in series if since is None or s.t > since]
                for name, series in self.series.items()
                if name in wanted
            },
        }

    def recent_waits(self, name: str, window_s: float = RECENT_S) -> dict[str, Any]:
        """Where requests waited over the samples of the last ``window_s`` seconds: the
        router's queue, the workers' queues, and the whole time in a worker (its queue,
        the model server's own queue, the work). Each mean is weighted by the requests
        behind it, each max is the longest; None where no request was routed (router) or
        finished (workers) in that time."""
        series = self.series.get(name) or ()
        last = series[-1].t if series else 0.0
        recent = [s for s in series if s.t > last - window_s]
        return {
            "window_s": window_s,
            "router_queue": _summary(
                [(s.routed_per_s, s.wait_mean_s, s.wait_max_s) for s in recent]
            ),
            "worker_queue": _summary(
                [(s.finished_per_s, s.worker_wait_mean_s, s.worker_wait_max_s) for s in recent]
            ),
            "in_worker": _summary(
                [(s.finished_per_s, s.worker_time_mean_s, s.worker_time_max_s) for s in recent]
            ),
        }

    async def run(self) -> None:
        """Sample every ``interval_s`` on the loop's clock (no drift), until cancelled."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += self.interval_s
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            if loop.time() - next_at > self.interval_s:  # the loop was stalled: skip ahead
                next_at = loop.time()
            self.sample()


def _summary(samples: list[tuple[float, float | None, float | None]]) -> dict[str, float | None]:
    """``{"mean_s", "max_s"}`` of (rate, mean, max) samples: the means weighted by rate."""
    weight = sum(rate for rate, mean, _ in samples if mean is not None)
    total = sum(rate * mean for rate, mean, _ in samples if mean is not None)
    maxes = [peak for _, _, peak in samples if peak is not None]
    return {
        "mean_s": round(total / weight, 4) if weight else None,
        "max_s": max(maxes) if maxes else None,
    }
