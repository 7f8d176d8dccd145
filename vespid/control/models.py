"""Endpoints as the control plane keeps them: name, API key, scaling parameters, template.

An endpoint file (YAML) lists endpoints under ``endpoints:``; the same fields travel
over HTTP and through ``vespid endpoint create``. Unknown fields are refused, so a
typo in a file stops start-up with a line naming it.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vespid.errors import ConfigError

__all__ = ["EndpointConfig", "ScalingConfig", "WorkerTemplate", "load_endpoints_file"]


class ScalingConfig(BaseModel):
    """The scaling parameters of PROTOCOL.md section 6, with vespid's defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_load: float = Field(0.0, ge=0, description="Workload/s kept provisioned.")
    target_util: float = Field(0.9, gt=0, le=1, description="Fraction of capacity to aim for.")
    cold_mult: float = Field(0.0, ge=0, description="Extra capacity kept as cold workers.")
    cold_workers: int = Field(0, ge=0, description="Minimum cold workers.")
    max_workers: int = Field(4, ge=0, description="Most workers at once.")
    inactivity_timeout: float = Field(
        300.0, description="Seconds without load before scaling to zero (<= 0: never)."
    )
    max_queue_time: float = Field(30.0, ge=0, description="Seconds a request may wait on a worker.")
    target_queue_time: float = Field(10.0, ge=0, description="Queue time to aim for.")
    scale_down_delay: float = Field(
        30.0, ge=0, description="Seconds of low demand before scaling down."
    )


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
    ready_timeout: float = Field(600.0, gt=0, description="Seconds a worker may take to be ready.")


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


def _describe(exc: ValidationError, where: str) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where}{'.' + loc if loc else ''}: {err['msg']}")
    return "; ".join(parts)


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
            raise ConfigError(_describe(exc, f"{path}: endpoints[{i}]")) from None
    return endpoints
