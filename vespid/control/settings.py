"""``vespid control`` settings: where it listens, where it keeps state, its limits."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ControlSettings"]


class ControlSettings(BaseModel):
    """Everything ``vespid control`` can be told (environment variable or flag)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(
        "127.0.0.1", json_schema_extra={"env": "VESPID_CONTROL_HOST"}, description="Listen address."
    )
    port: int = Field(
        8080, ge=0, le=65535, json_schema_extra={"env": "VESPID_CONTROL_PORT"},
        description="Listen port (0: any free port).",
    )  # fmt: skip
    state_dir: Path = Field(
        Path.home() / ".vespid",
        json_schema_extra={"env": "VESPID_STATE_DIR"},
        description="Where the state database, keys and worker logs live.",
    )
    endpoints_file: Path | None = Field(
        None,
        json_schema_extra={"env": "VESPID_ENDPOINTS_FILE"},
        description="YAML file of endpoints, applied at start.",
    )
    public_url: str | None = Field(
        None,
        json_schema_extra={"env": "VESPID_PUBLIC_URL"},
        description="URL workers report to; default http://HOST:PORT.",
    )
    admin_key: str | None = Field(
        None,
        min_length=8,
        json_schema_extra={"env": "VESPID_ADMIN_KEY"},
        description="Key for the endpoint admin API; generated and kept in STATE_DIR if unset.",
    )
    max_queued: int = Field(
        1000, ge=0, json_schema_extra={"env": "VESPID_MAX_QUEUED"},
        description="Requests an endpoint may hold in the router's queue; beyond, 429.",
    )  # fmt: skip
    scale_interval_s: float = Field(
        0.5, gt=0, json_schema_extra={"env": "VESPID_SCALE_INTERVAL_S"},
        description="Seconds between autoscaler decisions.",
    )  # fmt: skip
    route_hold_s: float = Field(
        5.0, ge=0, le=9, json_schema_extra={"env": "VESPID_ROUTE_HOLD_S"},
        description="How long a queued /route/ call is held for a worker before 'queued'.",
    )  # fmt: skip
    max_route_cost: float = Field(
        1e9, gt=0, le=1e12, allow_inf_nan=False,
        json_schema_extra={"env": "VESPID_MAX_ROUTE_COST"},
        description="Most workload one /route/ call may cost; beyond, 422.",
    )  # fmt: skip
    max_header_bytes: int = Field(
        16 * 1024, ge=1024, json_schema_extra={"env": "VESPID_MAX_HEADER_BYTES"},
        description="Most bytes of request headers, all together; more gets 431.",
    )  # fmt: skip
    max_headers: int = Field(
        100, ge=8, json_schema_extra={"env": "VESPID_MAX_HEADERS"},
        description="Most request headers; more gets 431.",
    )  # fmt: skip
    max_request_line_bytes: int = Field(
        8190, ge=256, json_schema_extra={"env": "VESPID_MAX_REQUEST_LINE_BYTES"},
        description="Longest request target (path and query); longer gets 414.",
    )  # fmt: skip
    header_timeout_s: float = Field(
        10.0, gt=0, le=300, allow_inf_nan=False,
        json_schema_extra={"env": "VESPID_HEADER_TIMEOUT_S"},
        description="Seconds a request's line and headers may take to arrive; "
        "then 408 and the connection closes.",
    )  # fmt: skip
    body_timeout_s: float = Field(
        30.0, gt=0, le=600, allow_inf_nan=False,
        json_schema_extra={"env": "VESPID_BODY_TIMEOUT_S"},
        description="Seconds a request's body may take to arrive; then 408 and the "
        "connection closes.",
    )  # fmt: skip
    max_connections: int = Field(
        1000, ge=1, json_schema_extra={"env": "VESPID_MAX_CONNECTIONS"},
        description="Connections held open at once; more are answered 503 and closed.",
    )  # fmt: skip
    signature_ttl_s: int = Field(
        120, ge=5, le=600, json_schema_extra={"env": "VESPID_SIGNATURE_TTL_S"},
        description="How long a signed route stays valid.",
    )  # fmt: skip
    provider: Literal["local", "ray"] = Field(
        "local",
        json_schema_extra={"env": "VESPID_PROVIDER"},
        description="Where workers run: local (processes on this machine) or ray (a Ray cluster).",
    )
    ray_address: str | None = Field(
        None,
        json_schema_extra={"env": "VESPID_RAY_ADDRESS"},
        description="With provider ray: the cluster to join (auto, ray://host:10001, host:port); "
        "unset: start a Ray instance on this machine.",
    )
    ray_namespace: str = Field(
        "vespid",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        json_schema_extra={"env": "VESPID_RAY_NAMESPACE"},
        description="With provider ray: the Ray namespace of the workers' actors; one per "
        "control plane sharing a cluster.",
    )
    request_signing: Literal["hmac", "rsa"] = Field(
        "hmac",
        json_schema_extra={"env": "VESPID_REQUEST_SIGNING"},
        description="How routed requests are signed for workers this control plane starts: "
        "hmac (a key per worker, cheap to check) or rsa (the router's key).",
    )
    orphan_timeout_s: float = Field(
        60.0, ge=0, le=86400, allow_inf_nan=False,
        json_schema_extra={"env": "VESPID_ORPHAN_TIMEOUT"},
        description="Seconds a worker runs on with its reports unanswered (the control "
        "plane gone) before it stops itself and its model server; 0: never.",
    )  # fmt: skip
    stop_workers_on_exit: bool = Field(
        False,
        json_schema_extra={"env": "VESPID_STOP_WORKERS_ON_EXIT"},
        description="Stop every worker when the control plane stops; false: leave them "
        "running for the next start to adopt.",
    )
    log_level: str = Field(
        "INFO",
        pattern=r"^(?i:debug|info|warning|error)$",
        json_schema_extra={"env": "VESPID_LOG_LEVEL"},
        description="debug, info, warning or error.",
    )
