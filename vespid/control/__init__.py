"""The control plane: endpoints, the router, the autoscaler and the providers it drives."""

from __future__ import annotations

from vespid.control.app import ControlPlane
from vespid.control.models import EndpointConfig, ScalingConfig, WorkerTemplate
from vespid.control.serve import running_control, serve_control
from vespid.control.settings import ControlSettings

__all__ = [
    "ControlPlane",
    "ControlSettings",
    "EndpointConfig",
    "ScalingConfig",
    "WorkerTemplate",
    "running_control",
    "serve_control",
]
