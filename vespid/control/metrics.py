"""The control plane's Prometheus metrics: counters bumped where things happen, gauges
set from the fleet and the router's queues at each scrape (workers by endpoint and phase:
starting, ready, waking, draining, parked, errored), and the seconds workers spent
parked, counted up to each scrape."""

from __future__ import annotations

from collections.abc import Collection

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from vespid.control.fleet import Fleet
from vespid.control.router import Router

__all__ = ["ControlMetrics"]


class ControlMetrics:
    """One registry per control plane (tests run several in one process)."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.endpoints = Gauge("vespid_control_endpoints", "Endpoints configured.", registry=r)
        self.workers = Gauge(
            "vespid_control_workers", "Workers by endpoint and state.", ["endpoint", "state"],
            registry=r,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "vespid_control_queue_depth", "Requests waiting in the router's queue.", ["endpoint"],
            registry=r,
        )  # fmt: skip
        self.route_decisions = Counter(
            "vespid_control_route_decisions", "Answers to /route/: routed, queued, rejected.",
            ["decision"], registry=r,
        )  # fmt: skip
        self.scaling_actions = Counter(
            "vespid_control_scaling_actions",
            "Scaling actions on workers: start, stop, drain, park, wake.",
            ["endpoint", "action"], registry=r,
        )  # fmt: skip
        self.provider_seconds = Histogram(
            "vespid_control_provider_seconds", "Time a provider call took.", ["operation"],
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30), registry=r,
        )  # fmt: skip
        self.requests_finished = Counter(
            "vespid_control_requests_finished", "Requests workers reported finished.",
            ["outcome"], registry=r,
        )  # fmt: skip

        self.parked_seconds = Counter(
            "vespid_control_parked_seconds", "Seconds workers spent parked.", ["endpoint"],
            registry=r,
        )  # fmt: skip
        self._parked_counted: dict[str, float] = {}  # endpoint -> parked seconds counted

    def count_route(self, answer: str) -> None:
        """One answer to ``/route/``: routed, queued or rejected."""
        self.route_decisions.labels(answer).inc()

    def count_finished(self, success: bool) -> None:
        """One request a worker reported finished."""
        self.requests_finished.labels("success" if success else "failure").inc()

    def refresh(self, endpoints: Collection[str], fleet: Fleet, router: Router) -> None:
        """Set the gauges from the endpoints, the fleet and the router's queues."""
        self.endpoints.set(len(endpoints))
        self.workers.clear()
        for record in fleet.workers.values():
            self.workers.labels(record.handle.endpoint, record.phase.value).inc()
        self.queue_depth.clear()
        for name in endpoints:
            self.queue_depth.labels(name).set(router.queued_load(name)[1])
            parked_s = fleet.parked_seconds(name)
            counted = self._parked_counted.get(name, 0.0)
            if parked_s > counted:
                self.parked_seconds.labels(name).inc(parked_s - counted)
                self._parked_counted[name] = parked_s

    def render(self) -> bytes:
        return generate_latest(self.registry)
