"""The worker's Prometheus metrics, in a registry of its own (one per worker app)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["WorkerMetrics"]

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class WorkerMetrics:
    """Counters and gauges exposed at ``GET /metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "vespid_worker_requests",
            "Requests finished, by HTTP status and outcome "
            "(success, client_error, error, rejected, cancelled).",
            ["status", "outcome"],
            registry=r,
        )
        self.workload_served = Counter(
            "vespid_worker_workload_served", "Workload of requests answered with 2xx.", registry=r
        )
        self.workload_rejected = Counter(
            "vespid_worker_workload_rejected", "Workload refused with 429.", registry=r
        )
        self.queue_depth = Gauge(
            "vespid_worker_queue_depth", "Requests waiting for a backend slot.", registry=r
        )
        self.in_flight = Gauge(
            "vespid_worker_in_flight", "Requests being served by the backend now.", registry=r
        )
        self.latency = Histogram(
            "vespid_worker_request_duration_seconds",
            "Time from arrival to the last byte sent, in seconds.",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.ready = Gauge("vespid_worker_ready", "1 when ready to serve.", registry=r)
        self.errored = Gauge("vespid_worker_errored", "1 when the model is broken.", registry=r)
        self.max_perf = Gauge(
            "vespid_worker_max_perf", "Benchmarked throughput, workload per second.", registry=r
        )

        # The labelled children of ``requests``, by (status, outcome): labels() costs a
        # lock and a tuple of strings per call, so each child is looked up once.
        self._request_counters: dict[tuple[int, str], Counter] = {}

    def count_request(self, status: int, outcome: str) -> None:
        """One finished (or refused) request with that status and outcome."""
        child = self._request_counters.get((status, outcome))
        if child is None:
            child = self.requests.labels(str(status), outcome)
            self._request_counters[(status, outcome)] = child
        child.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
