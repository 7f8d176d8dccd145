"""The autoscaling policy's types: its inputs (an endpoint's scaling parameters, a frozen
snapshot of the endpoint, the state it carries between decisions) and its output (a
decision).

``ScalingConfig`` is the pydantic model of the parameters that endpoints carry on the
wire and in YAML files, and the one statement of their ranges; the rest are frozen
dataclasses with no behaviour beyond checking the snapshot's assumed throughput. The
stages that read them are in ``policy_stages.py`` and ``decide`` in ``policy.py``.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_serializer,
    field_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "DEFAULT_PERF",
    "MAX_WORKERS",
    "WAKE_TIMEOUT_S",
    "Decision",
    "Demand",
    "PolicyState",
    "ScalingConfig",
    "ScalingSnapshot",
    "WorkerPhase",
    "WorkerView",
]


# Workload/s assumed for a worker of an endpoint that has never been benchmarked.
DEFAULT_PERF: Final = 100.0
# The most workers an endpoint may ask for (max_workers, cold_workers): far beyond any real
# fleet, and few enough that the starts one scaling step makes stay bounded.
MAX_WORKERS: Final = 10_000
# A WAKING worker not READY this long after it was told to wake has failed (ERRORED, so
# stopped and replaced): a vLLM sleep level 1 wake copies the weights back from CPU memory,
# seconds even for a large model; two minutes is far beyond that and far below a cold start
# of the same model from disk.
WAKE_TIMEOUT_S: Final = 120.0


class WorkerPhase(enum.Enum):
    """Where a worker is in its life, as the control plane sees it."""

    STARTING = "starting"  # process launched, not yet ready: counts as capacity, takes no work
    READY = "ready"  # benchmarked and serving; routable unless saturated
    WAKING = "waking"  # a parked worker being woken: counts as capacity, takes no work yet
    DRAINING = "draining"  # takes no new work; stopped (or parked) once its work is done
    PARKED = "parked"  # model server kept loaded (asleep where it can), takes no work
    ERRORED = "errored"  # broken or silent; always stopped and replaced
    STOPPING = "stopping"  # told to stop: neither capacity nor load any more


def _param(default: float, description: str, *, must_be: str, fix: str, **limits: Any) -> Any:
    """A scaling parameter's field: its default and ``limits`` (pydantic's constraints),
    and the words a refusal uses: ``must be <must_be> (got <value>); <fix>``."""
    extra: dict[str, JsonValue] = {"must_be": must_be, "fix": fix}
    return Field(default, description=description, json_schema_extra=extra, **limits)


class ScalingConfig(BaseModel):
    """An endpoint's scaling parameters (PROTOCOL.md §6) under the protocol's names, with
    vespid's defaults; times are in seconds.

    This model is the one statement of their ranges. A bad value is refused naming the
    field, what it must be and what to use instead, e.g. ``target_util: must be in (0, 1]
    (got 1.5); it is the fraction of capacity to aim for, e.g. 0.9 (1.0 for null
    workers)``. Only ``max_queue_time`` may be infinite (a worker is then never
    saturated; JSON spells it ``"Infinity"``); NaN is refused everywhere, and so are
    booleans for the counts.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_load: float = _param(
        0.0,
        "Workload/s kept provisioned even with no demand.",
        must_be="a finite number >= 0",
        fix="it is the workload/s kept provisioned; use 0 for none",
        ge=0,
        allow_inf_nan=False,
    )
    target_util: float = _param(
        1.0,
        "Fraction of capacity to aim for (1: full batches; the backlog term is the headroom).",
        must_be="in (0, 1]",
        fix="it is the fraction of capacity to aim for, e.g. 0.9 (1.0 for null workers)",
        gt=0,
        le=1,
        allow_inf_nan=False,
    )
    cold_mult: float = _param(
        0.0,
        "Cold workers kept, as a multiple of the active ones.",
        must_be="a finite number >= 0",
        fix="use 0 to keep no cold workers beyond cold_workers",
        ge=0,
        allow_inf_nan=False,
    )
    cold_workers: int = _param(
        0,
        "At least this many cold workers.",
        must_be=f"an integer from 0 to {MAX_WORKERS}",
        fix="use 0 for no minimum",
        ge=0,
        le=MAX_WORKERS,
    )
    max_workers: int = _param(
        4,
        "Most workers at once, active plus cold.",
        must_be=f"an integer from 0 to {MAX_WORKERS}",
        fix="it counts active and cold workers; 0 keeps the endpoint empty",
        ge=0,
        le=MAX_WORKERS,
    )
    reservoir_workers: int = _param(
        8,
        "A fixed total of active plus parked workers: the cold pool is what the active "
        "ones leave of it (0: off, the pool follows cold_workers and cold_mult).",
        must_be=f"an integer from 0 to {MAX_WORKERS}",
        fix="use 0 for a cold pool set by cold_workers and cold_mult",
        ge=0,
        le=MAX_WORKERS,
    )
    inactivity_timeout: float = _param(
        300.0,
        "Seconds without activity before scaling to zero (<= 0: never).",
        must_be="a finite number",
        fix="use 0 to never scale to zero",
        allow_inf_nan=False,
    )
    park_timeout: float = _param(
        300.0,
        "Seconds a parked worker of an inactive endpoint is kept before it is stopped "
        "(<= 0: kept for as long as the pool wants it).",
        must_be="a finite number",
        fix="use 0 to keep parked workers of an idle endpoint",
        allow_inf_nan=False,
    )
    max_queue_time: float = _param(
        3.0,
        "A READY worker with a longer queue time (s) gets no new work (inf: never).",
        must_be=">= 0",
        fix="use 0 to route only to idle workers (null workers)",
        ge=0,
    )
    target_queue_time: float = _param(
        9.0,
        "Seconds within which queued load should be served.",
        must_be="a finite number >= 0",
        fix="use 0 to count queued load in full",
        ge=0,
        allow_inf_nan=False,
    )
    scale_down_delay: float = _param(
        5.0,
        "Stabilization window (s): a scale-down goes to the most workers wanted over it.",
        must_be="a finite number >= 0",
        fix="use 0 to scale down at once",
        ge=0,
        allow_inf_nan=False,
    )

    @field_serializer("max_queue_time", when_used="json")
    def _spell_infinity(self, value: float) -> float | str:
        """An infinite ``max_queue_time`` as ``"Infinity"`` in JSON (a JSON number cannot
        be infinite, and null would not load again): stored, listed and read back alike."""
        return "Infinity" if math.isinf(value) else value

    @field_validator("*", mode="wrap")
    @classmethod
    def _explain_refusal(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Any:
        """Pydantic's checks, refused in the field's own words (and no bool as a count)."""
        field = cls.model_fields[str(info.field_name)]
        if not (isinstance(value, bool) and field.annotation is int):
            try:
                return handler(value)
            except ValidationError:
                pass
        words = field.json_schema_extra
        assert isinstance(words, dict)
        raise PydanticCustomError(
            "scaling_parameter",
            "must be {must_be} (got {got}); {fix}",
            {"must_be": words["must_be"], "got": repr(value), "fix": words["fix"]},
        )


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
    # The part of cur_load not started yet (waiting on the worker for a backend slot):
    # backlog; the rest of cur_load is running work (occupancy).
    waiting_load: float = 0.0
    revision: int = 0  # the endpoint template revision the worker was started on
    phase_since: float = 0.0  # when it entered its phase (same clock as now)
    # How long the oldest request waiting on the worker for a backend slot has waited
    # there (its report's ``waiting_age``, aged by the time since that report); 0 if none.
    oldest_wait_s: float = 0.0
    # Its concurrency limit and the slots free at its last report (``slots`` 0: it does
    # not tell waiting work apart), and the load and requests routed to it since that
    # report (part of cur_load): the router's wait estimate (``policy_wait``) reads them.
    slots: int = 0
    free_slots: int = 0
    routed_load: float = 0.0
    routed_requests: int = 0


@dataclass(frozen=True, slots=True)
class ScalingSnapshot:
    """Everything the policy may know about one endpoint at ``now``."""

    now: float
    params: ScalingConfig
    # Workload/s assumed for a worker not yet benchmarked: the endpoint's last measured
    # throughput once known, else DEFAULT_PERF.
    default_perf: float = DEFAULT_PERF
    ready_timeout_s: float = 600.0  # a STARTING worker older than this has failed (template)
    gpus_per_worker: int = 0  # GPUs each new worker takes (template)
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
    oldest_wait_s: float = 0.0  # how long the oldest request in the router's queue has waited
    revision: int = 0  # the endpoint's current template revision

    def __post_init__(self) -> None:
        if not (math.isfinite(self.default_perf) and self.default_perf > 0):
            raise ValueError(
                f"default_perf must be a finite number > 0 (got {self.default_perf!r}); "
                "it is the workload/s assumed before a benchmark, e.g. 100"
            )


@dataclass(frozen=True, slots=True)
class PolicyState:
    """What the policy carries from one decision to the next."""

    # The stabilization window: (when, active workers wanted) of the ticks that may still
    # be its most, oldest first, each wanting more than the next (a later tick wanting as
    # many or more drops them), so it holds at most one entry per worker count.
    window: tuple[tuple[float, int], ...] = ()
    start_failures: int = 0  # failed starts in a row the backoff below was set for
    start_after: float | None = None  # no worker starts before this (start backoff)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the autoscaler should do now.

    The autoscaler stops the workers in ``stop``, drains those in ``drain`` (the router
    sends them nothing new; a later decision parks or stops them once they are empty),
    parks those in ``park`` (idle, or drained and now empty: the model server stays
    loaded, asleep where it can), wakes those in ``wake`` (PARKED ones become WAKING,
    then READY; a DRAINING one returns to READY at once) and starts ``start`` new
    workers. Waking comes before starting: ``start`` counts only what the wakes do not
    cover. ``start`` is counted from the snapshot, so a worker must show as STARTING from
    the moment it is launched or the next decision starts it again.
    """

    target_active: int  # active workers once this is carried out (drained ones leave)
    target_cold: int  # parked workers to keep (the cold pool)
    stop: tuple[str, ...]  # errored workers, then those chosen for a scale-down
    start: int  # new workers to launch now (after wakes, backoff and GPUs)
    reason: str  # the figures behind it, for logs
    held_for_gpus: int = 0  # starts wanted that the free GPUs do not fit
    timed_out: tuple[str, ...] = ()  # STARTING workers past ready_timeout_s (in ``stop``)
    drain: tuple[str, ...] = ()  # busy READY workers to take out of routing
    park: tuple[str, ...] = ()  # idle READY or emptied DRAINING workers to park
    wake: tuple[str, ...] = ()  # PARKED or DRAINING workers to bring back into service


@dataclass(frozen=True, slots=True)
class Demand:
    """The terms of the demand formula; ``total`` is in workload/s."""

    occupancy: float  # Σ cur_load of live workers holding sessions: reserved in full
    backlog: float  # Σ waiting_load of the other live workers + queued_load: not started
    # max(target_queue_time − queue age, 1 s): what is left of the target for the oldest
    # waiter (in the router's queue or a live worker's), within which the backlog drains
    horizon_s: float
    arrival: float  # workload/s arriving (the collector's 30 s window)
    rejected: float  # workload/s refused with 429
    running: float = 0.0  # Σ (cur_load − waiting_load) of the others: served, not asked for
    # target_queue_time 0, Vast's convention: every load is asked for in full, and the
    # arrival rate is a floor under it rather than a term added to it
    in_full: bool = False

    @property
    def drain_rate(self) -> float:
        """The rate that clears the backlog within the horizon."""
        return self.backlog / self.horizon_s

    @property
    def total(self) -> float:
        """max(arrival, occupancy) + backlog / horizon + rejected, in workload/s; in full
        (Vast's convention), max(arrival, occupancy + backlog) + rejected."""
        if self.in_full:
            return max(self.arrival, self.occupancy + self.backlog) + self.rejected
        return max(self.arrival, self.occupancy) + self.drain_rate + self.rejected
