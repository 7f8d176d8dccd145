"""The autoscaling policy's types: its inputs (parameters, a frozen snapshot of one
endpoint, the state it carries between decisions) and its output (a decision).

All are frozen dataclasses with no behaviour beyond validating the parameters; the stages
that read them are in ``policy_stages.py`` and ``decide`` in ``policy.py``.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

__all__ = [
    "Decision",
    "Demand",
    "Direction",
    "PolicyState",
    "ScalingParams",
    "ScalingSnapshot",
    "WorkerPhase",
    "WorkerView",
]


class WorkerPhase(enum.Enum):
    """Where a worker is in its life, as the control plane sees it."""

    STARTING = "starting"  # process launched, not yet ready: counts as capacity, takes no work
    READY = "ready"  # benchmarked and serving; routable unless saturated
    ERRORED = "errored"  # broken or silent; always stopped and replaced
    COLD = "cold"  # stopped but provisioned (model on disk): starts faster than a new one
    STOPPING = "stopping"  # told to stop: neither capacity nor load any more


class Direction(enum.Enum):
    """Which way a change in the number of active workers goes."""

    UP = "up"  # applies on the tick it is wanted (a zero delay), so it is never left pending
    DOWN = "down"  # waits scale_down_delay_s of wall clock
    NONE = "none"


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass(frozen=True, slots=True)
class ScalingParams:
    """An endpoint's scaling parameters (PROTOCOL.md §6) plus vespid's own two."""

    min_load: float = 0.0  # workload/s kept provisioned even with no demand
    target_util: float = 0.9  # fraction of capacity to aim for, in (0, 1]
    cold_mult: float = 0.0  # cold workers kept, as a multiple of the active ones
    cold_workers: int = 0  # at least this many cold workers
    max_workers: int = 4  # active plus cold
    inactivity_timeout_s: float = 300.0  # no activity this long -> scale to zero; <= 0: never
    max_queue_time_s: float = 30.0  # a READY worker with a longer queue time is saturated
    target_queue_time_s: float = 10.0  # queued load should be served within this
    scale_down_delay_s: float = 30.0  # wall-clock seconds of lower demand before scaling down
    default_perf: float = 100.0  # workload/s assumed for a worker not yet benchmarked
    ready_timeout_s: float = 600.0  # a STARTING worker older than this has failed (template)
    gpus_per_worker: int = 0  # GPUs each new worker takes (template)

    def __post_init__(self) -> None:
        finite = math.isfinite
        checks = (
            ("min_load", finite(self.min_load) and self.min_load >= 0, "a finite number >= 0",
             "it is the workload/s kept provisioned; use 0 for none"),
            ("target_util", finite(self.target_util) and 0 < self.target_util <= 1, "in (0, 1]",
             "it is the fraction of capacity to aim for, e.g. 0.9 (1.0 for null workers)"),
            ("cold_mult", finite(self.cold_mult) and self.cold_mult >= 0, "a finite number >= 0",
             "use 0 to keep no cold workers beyond cold_workers"),
            ("cold_workers", _is_count(self.cold_workers), "an integer >= 0",
             "use 0 for no minimum"),
            ("max_workers", _is_count(self.max_workers), "an integer >= 0",
             "it counts active and cold workers; 0 keeps the endpoint empty"),
            ("inactivity_timeout_s", not math.isnan(self.inactivity_timeout_s), "a number",
             "use 0 to never scale to zero"),
            # inf is allowed: never saturated. NaN fails the comparison.
            ("max_queue_time_s", self.max_queue_time_s >= 0, ">= 0",
             "use 0 to route only to idle workers (null workers)"),
            ("target_queue_time_s",
             finite(self.target_queue_time_s) and self.target_queue_time_s >= 0,
             "a finite number >= 0", "use 0 to count queued load in full"),
            ("scale_down_delay_s",
             finite(self.scale_down_delay_s) and self.scale_down_delay_s >= 0,
             "a finite number >= 0", "use 0 to scale down at once"),
            ("default_perf", finite(self.default_perf) and self.default_perf > 0,
             "a finite number > 0", "it is the workload/s assumed before a benchmark, e.g. 100"),
            ("ready_timeout_s", self.ready_timeout_s > 0, "> 0",
             "it is the seconds a worker may take to be ready, e.g. 600"),
            ("gpus_per_worker", _is_count(self.gpus_per_worker), "an integer >= 0",
             "use 0 for workers without GPUs"),
        )  # fmt: skip
        for name, ok, rule, fix in checks:
            if not ok:
                raise ValueError(f"{name} must be {rule} (got {getattr(self, name)!r}); {fix}")


@dataclass(frozen=True, slots=True)
class WorkerView:
    """One worker as its latest report shows it."""

    worker_id: str
    state: WorkerPhase
    cur_load: float = 0.0  # workload in progress, open sessions included (PROTOCOL §3)
    max_perf: float | None = None  # workload/s; None until benchmarked
    sessions: int = 0  # open sessions
    in_flight: int = 0  # requests in progress
    started_at: float = 0.0  # same clock as ScalingSnapshot.now
    failed_before_ready: bool = False  # ERRORED without ever being READY (counts for backoff)


@dataclass(frozen=True, slots=True)
class ScalingSnapshot:
    """Everything the policy may know about one endpoint at ``now``."""

    now: float
    params: ScalingParams
    workers: tuple[WorkerView, ...] = ()
    queued_load: float = 0.0  # workload waiting in the router's queue
    queued_requests: int = 0
    rejected_load_rate: float = 0.0  # workload/s refused with 429 lately
    arrival_rate: float = 0.0  # workload/s arriving, smoothed by the collector
    last_activity_at: float | None = None  # last load, queue, session or refusal seen
    # Workers in a row that failed before they were ready and are gone already (the
    # ERRORED ones still in ``workers`` are counted from there); a worker that becomes
    # ready resets it to 0.
    start_failures: int = 0
    # GPUs the provider can hand out now, less those promised to starts in flight; None
    # when workers are not limited by GPUs.
    free_gpus: int | None = None
    launching: int = 0  # starts asked of the provider that are not in ``workers`` yet


@dataclass(frozen=True, slots=True)
class PolicyState:
    """What the policy carries from one decision to the next."""

    pending_direction: Direction = Direction.NONE
    pending_since: float | None = None  # when the pending change was first wanted
    pending_peak: int = 0  # most active workers wanted since pending_since
    start_failures: int = 0  # failed starts in a row the backoff below was set for
    start_after: float | None = None  # no worker starts before this (start backoff)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the autoscaler should do now.

    The provider stops the workers in ``stop`` (a stopped worker may join the cold
    pool, up to ``target_cold``) and starts ``start`` workers, activating cold ones
    first. ``start`` is counted from the snapshot, so a worker must show as STARTING
    from the moment it is launched or the next decision starts it again.
    """

    target_active: int  # active workers once this is carried out (busy ones kept count)
    target_cold: int  # cold workers to keep
    stop: tuple[str, ...]  # errored workers, then those chosen for a scale-down
    start: int  # workers to start or activate now (after backoff and GPUs)
    reason: str  # the figures behind it, for logs
    held_for_gpus: int = 0  # starts wanted that the free GPUs do not fit
    timed_out: tuple[str, ...] = ()  # STARTING workers past ready_timeout_s (in ``stop``)


@dataclass(frozen=True, slots=True)
class Demand:
    """The terms of the demand formula; ``total`` is in workload/s."""

    occupancy: float  # Σ cur_load of live workers holding sessions: counted in full
    backlog: float  # Σ cur_load of the other live workers + queued_load: it drains
    horizon_s: float  # max(target_queue_time_s, 1 s): the backlog should drain within it
    arrival: float  # workload/s arriving
    rejected: float  # workload/s refused with 429

    @property
    def held(self) -> float:
        """Occupancy plus the rate that drains the backlog within the horizon."""
        return self.occupancy + self.backlog / self.horizon_s

    @property
    def total(self) -> float:
        return max(self.arrival, self.held) + self.rejected
