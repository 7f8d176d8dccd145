"""The control plane's Prometheus metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from vespid.control.app import ControlPlane

__all__ = ["ControlMetrics"]


class ControlMetrics:
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
            "vespid_control_scaling_actions", "Workers started and stopped.",
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

    def refresh(self, control: ControlPlane) -> None:
        """Set the gauges from the control plane's current state."""
        self.endpoints.set(len(control.endpoints))
        self.workers.clear()
        for record in control.fleet.workers.values():
            self.workers.labels(record.handle.endpoint, record.phase.value).inc()
        self.queue_depth.clear()
        for name in control.endpoints:
            self.queue_depth.labels(name).set(control.router.queued_load(name)[1])

    def render(self) -> bytes:
        return generate_latest(self.registry)
