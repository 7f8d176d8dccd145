"""The task server's Prometheus metrics (read through the worker's ``/metrics/backend``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["TaskMetrics"]

DURATION_BUCKETS_S = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class TaskMetrics:
    """Counters kept as tasks end; gauges set from the pool when scraped."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.tasks = Counter(
            "vespid_tasks",
            "Tasks ended, by model, status (completed, failed, cancelled) and reason.",
            ["model", "status", "reason"],
            registry=r,
        )
        self.refused = Counter(
            "vespid_tasks_refused",
            "Tasks refused with 429, by reason (queue_full, wait_limit).",
            ["reason"],
            registry=r,
        )
        self.started = Counter(
            "vespid_task_processes_started",
            "Task programs started, by model.",
            ["model"],
            registry=r,
        )
        self.duration = Histogram(
            "vespid_task_duration_seconds",
            "Time from getting a GPU to the finish event, in seconds.",
            ["model"],
            buckets=DURATION_BUCKETS_S,
            registry=r,
        )
        self.slots = Gauge(
            "vespid_task_slots", "GPUs (or the one CPU slot) in the pool.", registry=r
        )
        self.busy = Gauge("vespid_task_slots_busy", "Slots running a task.", registry=r)
        self.idle_sessions = Gauge(
            "vespid_task_sessions_idle", "Session programs waiting for their next task.", registry=r
        )
        self.queue_depth = Gauge("vespid_task_queue_depth", "Tasks waiting for a GPU.", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
