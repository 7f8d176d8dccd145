"""Endpoints as the control plane keeps them: name, API key, scaling parameters, template.

An endpoint file (YAML) lists endpoints under ``endpoints:``; the same fields travel
over HTTP and through ``vespid endpoint create``. Unknown fields are refused, so a
typo in a file stops start-up with a line naming it.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vespid.control.policy_types import ScalingConfig  # re-exported: it lives beside the policy
from vespid.errors import ConfigError, NotFound, RequestInvalid

__all__ = [
    "EndpointConfig",
    "ScalingConfig",
    "WorkerTemplate",
    "find_endpoint",
    "load_endpoints_file",
    "parse_endpoint",
]


class WorkerTemplate(BaseModel):
    """How to start one worker: its model server and the vespid worker before it.

    ``model_command`` may use ``{model_port}``, ``{worker_port}`` and ``{gpus}``; the
    worker gets ``BACKEND_URL=http://127.0.0.1:{model_port}`` and ``env``. Without a
    ``model_command``, or with ``BACKEND: null`` in ``env``, workers are null workers;
    a ``model_command`` then runs beside each as a sidecar and may use
    ``{control_port}`` (the worker's 127.0.0.1 control server, for ``/release``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_command: list[str] | None = Field(
        None, description="Model server command; none for a null worker (BACKEND=null)."
    )
    env: dict[str, str] = Field(default_factory=dict, description="Worker environment.")
    model_env: dict[str, str] = Field(default_factory=dict, description="Model server environment.")
    gpus_per_worker: int = Field(0, ge=0, description="GPUs given to each worker.")
    ready_timeout: float = Field(
        600.0, gt=0, allow_inf_nan=False, description="Seconds a worker may take to be ready."
    )


class EndpointConfig(BaseModel):
    """One endpoint: what clients name, the key they use, how it scales, what it runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    api_key: str = Field(default_factory=lambda: secrets.token_urlsafe(24), min_length=8)
    scaling: ScalingConfig = Field(default_factory=ScalingConfig)
    template: WorkerTemplate = Field(default_factory=WorkerTemplate)

    def public(self) -> dict[str, Any]:
        """The listing shape Vast's console API uses (``/api/v0/endptjobs/``)."""
        s = self.scaling
        return {
            "id": self.name,
            "endpoint_name": self.name,
            "api_key": self.api_key,
            "min_load": s.min_load,
            "target_util": s.target_util,
            "cold_mult": s.cold_mult,
            "cold_workers": s.cold_workers,
            "max_workers": s.max_workers,
            "inactivity_timeout": s.inactivity_timeout,
            "max_queue_time": s.max_queue_time,
            "target_queue_time": s.target_queue_time,
            "endpoint_state": "active",
            "user_id": 0,
            "created_at": 0.0,
        }


def parse_endpoint(body: Any) -> EndpointConfig:
    """An endpoint from a JSON body; ``RequestInvalid`` (422) naming every bad field."""
    try:
        return EndpointConfig.model_validate(body)
    except ValidationError as exc:
        raise RequestInvalid.from_validation(exc, "endpoint") from None


def find_endpoint(endpoints: Mapping[str, EndpointConfig], name: object) -> EndpointConfig:
    """The endpoint called ``name``; ``NotFound`` (404) saying where to look."""
    if not isinstance(name, str) or name not in endpoints:
        raise NotFound(f"no endpoint named {name!r}; see GET /api/v0/endptjobs/")
    return endpoints[name]


def load_endpoints_file(path: Path) -> list[EndpointConfig]:
    """Read an endpoints YAML file; ConfigError naming the file and the field on a mistake."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"VESPID_ENDPOINTS_FILE: cannot read {path} ({exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("endpoints", []), list):
        raise ConfigError(f"{path}: expected 'endpoints:' holding a list of endpoints")
    endpoints = []
    for i, item in enumerate(data.get("endpoints", [])):
        try:
            endpoints.append(EndpointConfig.model_validate(item))
        except ValidationError as exc:
            error = RequestInvalid.from_validation(
                exc, f"endpoint in {path}", prefix=f"endpoints[{i}]."
            )
            raise ConfigError(error.message) from None
    return endpoints
