"""The worker's settings: the seeds' environment variables, vespid's own, and their checks.

Each field reads one environment variable (named in its alias) and is also a
command-line flag of ``vespid worker`` (``--field-name``). Flags win over the
environment. A wrong value stops start-up with one line naming the variable.

The module is long for one concern: the table of settings itself (one field per
variable, each with its constraint and description), with the checks that read
several fields at once beside it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vespid.protocol.signing import decode_request_key
from vespid.settings import env_name as _env_name
from vespid.settings import load_settings

__all__ = ["WorkerSettings", "env_name", "load_worker_settings"]

_MODULE_FUNCTION = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_GPU_ID = re.compile(r"^[A-Za-z0-9][\w:/.-]*$")


class WorkerSettings(BaseModel):
    """Everything ``vespid worker`` can be told."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend_url: str = Field(
        "",
        json_schema_extra={"env": "BACKEND_URL"},
        description="Base URL of the model server, e.g. http://127.0.0.1:8000.",
    )
    benchmark: str | None = Field(
        None,
        json_schema_extra={"env": "BENCHMARK"},
        description="module:function of an async benchmark(backend_url, session) -> workload/s.",
    )
    handlers: list[str] = Field(
        default_factory=list,
        json_schema_extra={"env": "VESPID_HANDLERS"},
        description="module:attribute of handlers (vespid.handlers), comma-separated.",
    )
    raw_requests: bool = Field(
        False,
        json_schema_extra={"env": "VESPID_RAW_REQUESTS"},
        description="With UNSECURED: take a POST body that is no envelope as the payload.",
    )
    model_name: str | None = Field(
        None,
        json_schema_extra={"env": "MODEL_NAME"},
        description="Model served; keys the benchmark cache.",
    )
    healthcheck_endpoint: str | None = Field(
        None,
        json_schema_extra={"env": "HEALTHCHECK_ENDPOINT"},
        description="Backend path that answers 200 when the model is ready, e.g. /health.",
    )
    allow_parallel: bool = Field(
        True,
        json_schema_extra={"env": "ALLOW_PARALLEL"},
        description="false: one request at a time, in arrival order.",
    )
    max_concurrency: int | None = Field(
        None,
        ge=1,
        json_schema_extra={"env": "VESPID_MAX_CONCURRENCY"},
        description="With ALLOW_PARALLEL, at most this many requests at the backend at once.",
    )
    max_wait_time_s: float = Field(
        10.0,
        ge=0,
        json_schema_extra={"env": "MAX_WAIT_TIME"},
        description="Seconds a request may be expected to wait; beyond it the answer is 429.",
    )
    master_token: str = Field(
        "", json_schema_extra={"env": "MASTER_TOKEN"}, description="Token sent with every report."
    )
    report_addr: list[str] = Field(
        default_factory=list,
        json_schema_extra={"env": "REPORT_ADDR"},
        description="Autoscaler base URL(s), comma-separated; the first that accepts gets reports.",
    )
    container_id: int = Field(
        0, json_schema_extra={"env": "CONTAINER_ID"}, description="This worker's id in reports."
    )
    public_ipaddr: str | None = Field(
        None,
        json_schema_extra={"env": "PUBLIC_IPADDR"},
        description="Public address of this machine.",
    )
    worker_port: int = Field(
        3000,
        ge=0,
        le=65535,
        json_schema_extra={"env": "WORKER_PORT"},
        description="Port to listen on.",
    )
    public_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        json_schema_extra={"env": "VAST_TCP_PORT"},
        description="Public port mapped to WORKER_PORT (env VAST_TCP_PORT_<WORKER_PORT>).",
    )
    use_ssl: bool = Field(False, json_schema_extra={"env": "USE_SSL"}, description="Serve HTTPS.")
    ssl_cert_file: Path = Field(
        Path("/etc/instance.crt"),
        json_schema_extra={"env": "VESPID_SSL_CERT_FILE"},
        description="Certificate (PEM) for USE_SSL.",
    )
    ssl_key_file: Path = Field(
        Path("/etc/instance.key"),
        json_schema_extra={"env": "VESPID_SSL_KEY_FILE"},
        description="Private key (PEM) for USE_SSL.",
    )
    unsecured: bool = Field(
        False,
        json_schema_extra={"env": "UNSECURED"},
        description="Skip signature checks. Development only.",
    )
    public_key_file: Path | None = Field(
        None,
        json_schema_extra={"env": "VESPID_PUBLIC_KEY_FILE"},
        description="Router public key (PEM); otherwise fetched from REPORT_ADDR/pubkey/.",
    )
    request_key: str | None = Field(
        None,
        json_schema_extra={"env": "VESPID_REQUEST_KEY", "secret": True},
        description="This worker's HMAC request key (base64, 32 bytes), set by the control "
        "plane that starts it; requests it routes then carry a cheap HMAC tag.",
    )
    accept_vast_signatures: bool = Field(
        True,
        json_schema_extra={"env": "VESPID_ACCEPT_VAST_SIGNATURES"},
        description="Accept Vast's older signature schemes (needed behind Vast's router).",
    )
    model_log: Path | None = Field(
        None,
        json_schema_extra={"env": "MODEL_LOG"},
        description="Model server log to tail for readiness (older mode).",
    )
    log_loaded: list[str] = Field(
        default_factory=list,
        json_schema_extra={"env": "VESPID_LOG_LOADED"},
        description="Comma-separated strings that, in MODEL_LOG, mean the model is loaded.",
    )
    log_error: list[str] = Field(
        default_factory=list,
        json_schema_extra={"env": "VESPID_LOG_ERROR"},
        description="Comma-separated strings that, in MODEL_LOG, mean the model failed.",
    )
    log_info: list[str] = Field(
        default_factory=list,
        json_schema_extra={"env": "VESPID_LOG_INFO"},
        description="Comma-separated strings whose MODEL_LOG lines are logged at info.",
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        json_schema_extra={"env": "VESPID_MAX_BODY_BYTES"},
        description="Largest request body accepted; larger gets 413.",
    )
    host: str = Field(
        "0.0.0.0", json_schema_extra={"env": "VESPID_HOST"}, description="Address to listen on."
    )
    max_header_bytes: int = Field(
        64 * 1024,
        ge=1024,
        json_schema_extra={"env": "VESPID_MAX_HEADER_BYTES"},
        description="Most bytes of request headers, all together; more gets 431.",
    )
    max_headers: int = Field(
        100,
        ge=8,
        json_schema_extra={"env": "VESPID_MAX_HEADERS"},
        description="Most request headers; more gets 431.",
    )
    max_request_line_bytes: int = Field(
        8190,
        ge=256,
        json_schema_extra={"env": "VESPID_MAX_REQUEST_LINE_BYTES"},
        description="Longest request target (path and query); longer gets 414.",
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        json_schema_extra={"env": "VESPID_HEADER_TIMEOUT_S"},
        description="Seconds a request's headers may take to arrive; then 408 and closed.",
    )
    body_timeout_s: float = Field(
        60.0,
        gt=0,
        json_schema_extra={"env": "VESPID_BODY_TIMEOUT_S"},
        description="Seconds a request's body may take to arrive; then 408 and closed.",
    )
    max_connections: int = Field(
        1024,
        ge=1,
        json_schema_extra={"env": "VESPID_MAX_CONNECTIONS"},
        description="Most client connections each port holds; more are answered 503 and closed.",
    )
    health_interval_s: float = Field(
        5.0,
        gt=0,
        json_schema_extra={"env": "VESPID_HEALTH_INTERVAL_S"},
        description="Seconds between health checks once ready.",
    )
    ready_poll_s: float = Field(
        0.1,
        gt=0,
        le=5,
        json_schema_extra={"env": "VESPID_READY_POLL_S"},
        description="Seconds between readiness probes while loading.",
    )
    ready_wait_s: float = Field(
        30.0,
        ge=0,
        json_schema_extra={"env": "VESPID_READY_WAIT_S"},
        description="How long a request that arrives before ready waits; then 503.",
    )
    max_perf: float | None = Field(
        None,
        gt=0,
        json_schema_extra={"env": "VESPID_MAX_PERF"},
        description="Known throughput (workload/s); skips the benchmark.",
    )
    benchmark_key: str | None = Field(
        None,
        json_schema_extra={"env": "VESPID_BENCHMARK_KEY"},
        description="Stands for BACKEND_URL in the benchmark cache key (for URLs that change).",
    )
    rebenchmark: bool = Field(
        False,
        json_schema_extra={"env": "VESPID_REBENCHMARK"},
        description="Measure again at start, replacing the cached benchmark result.",
    )
    cache_dir: Path = Field(
        Path.home() / ".cache" / "vespid",
        json_schema_extra={"env": "VESPID_CACHE_DIR"},
        description="Where benchmark results are kept across restarts.",
    )
    backend_read_timeout_s: float = Field(
        600.0,
        gt=0,
        json_schema_extra={"env": "VESPID_BACKEND_READ_TIMEOUT_S"},
        description="Longest silence from the backend within one response.",
    )
    tasks: Path | None = Field(
        None,
        json_schema_extra={"env": "VESPID_TASKS"},
        description="Task presets (model_presets.yaml): serve task programs as the backend.",
    )
    gpus: list[str] | None = Field(
        None,
        json_schema_extra={"env": "VESPID_GPUS"},
        description="GPUs tasks may use, comma-separated (0,1); empty: none; unset: nvidia-smi's.",
    )
    task_queue_size: int = Field(
        8,
        ge=0,
        json_schema_extra={"env": "VESPID_TASK_QUEUE_SIZE"},
        description="Tasks that may wait for a busy GPU; one more is refused with 429.",
    )
    task_timeout_s: float = Field(
        600.0,
        gt=0,
        json_schema_extra={"env": "VESPID_TASK_TIMEOUT_S"},
        description="Seconds a task may run (unless its preset sets timeout_s); then killed.",
    )
    task_stop_grace_s: float = Field(
        5.0,
        gt=0,
        le=600,
        json_schema_extra={"env": "VESPID_TASK_STOP_GRACE_S"},
        description="Seconds between SIGTERM and SIGKILL to a task's process group.",
    )
    task_answer_max_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        json_schema_extra={"env": "VESPID_TASK_ANSWER_MAX_BYTES"},
        description='Most event bytes a "stream": false task collects; then stopped (507).',
    )
    docker: str = Field(
        "docker",
        json_schema_extra={"env": "VESPID_DOCKER"},
        description="Docker CLI for presets with a docker_image; empty: never use Docker.",
    )
    log_level: str = Field(
        "INFO",
        pattern=r"^(?i:debug|info|warning|error)$",
        json_schema_extra={"env": "VESPID_LOG_LEVEL"},
        description="debug, info, warning or error.",
    )

    backend: Literal["generic", "null"] = Field(
        "generic",
        json_schema_extra={"env": "BACKEND"},
        description="generic: proxy to BACKEND_URL; null: no model server, sessions only.",
    )
    max_sessions: int | None = Field(
        None,
        ge=1,
        json_schema_extra={"env": "MAX_SESSIONS"},
        description="Most sessions open at once (429 beyond); unlimited, or 1 with BACKEND=null.",
    )
    worker_http_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        json_schema_extra={"env": "WORKER_HTTP_PORT"},
        description="Plain-HTTP port serving /session/end; default WORKER_PORT+1 (0: any free).",
    )
    max_session_lifetime_s: float = Field(
        24 * 3600.0,
        gt=0,
        json_schema_extra={"env": "VESPID_MAX_SESSION_LIFETIME_S"},
        description="Cap on a session's lifetime (seconds); longer requests are refused with 422.",
    )
    on_close_hosts: list[str] = Field(
        default_factory=list,
        json_schema_extra={"env": "VESPID_ON_CLOSE_HOSTS"},
        description="Hosts an on_close_route may name, comma-separated, even private ones; "
        "empty: any host with only public addresses.",
    )
    max_on_close_payload_bytes: int = Field(
        64 * 1024,
        ge=0,
        json_schema_extra={"env": "VESPID_MAX_ON_CLOSE_PAYLOAD_BYTES"},
        description="Largest on_close_payload accepted at /session/create (as JSON).",
    )
    null_control_port: int = Field(
        18999,
        ge=0,
        le=65535,
        json_schema_extra={"env": "NULL_CONTROL_PORT"},
        description="BACKEND=null: 127.0.0.1 port of the control server (/release, /health).",
    )
    backend_health_url: str | None = Field(
        None,
        json_schema_extra={"env": "BACKEND_HEALTH_URL"},
        description="BACKEND=null: absolute URL to health-check instead of the stub /health.",
    )
    sleep: Literal["none", "vllm", "sglang", "http", "signal"] = Field(
        "none",
        json_schema_extra={"env": "VESPID_SLEEP"},
        description="How a parked worker puts its model server to sleep: none (stays loaded "
        "and idle), vllm, sglang, http (VESPID_SLEEP_PATH/VESPID_WAKE_PATH) or signal "
        "(SIGSTOP/SIGCONT to VESPID_MODEL_PID's process group).",
    )
    sleep_path: str | None = Field(
        None,
        json_schema_extra={"env": "VESPID_SLEEP_PATH"},
        description="VESPID_SLEEP=http: backend path POSTed to put it to sleep.",
    )
    wake_path: str | None = Field(
        None,
        json_schema_extra={"env": "VESPID_WAKE_PATH"},
        description="VESPID_SLEEP=http: backend path POSTed to wake it.",
    )
    wake_timeout_s: float = Field(
        300.0,
        gt=0,
        json_schema_extra={"env": "VESPID_WAKE_TIMEOUT_S"},
        description="Seconds a wake may take before its backend counts as broken.",
    )
    orphan_timeout_s: float = Field(
        0.0,
        ge=0,
        json_schema_extra={"env": "VESPID_ORPHAN_TIMEOUT"},
        description="Seconds without a 2xx answer to a report after which the worker stops "
        "its model server and itself; 0: never.",
    )
    model_pid: int | None = Field(
        None,
        ge=2,
        json_schema_extra={"env": "VESPID_MODEL_PID"},
        description="The model server's pid (leading its process group), stopped with the "
        "worker when orphaned, signalled with VESPID_SLEEP=signal.",
    )
    model_pid_start: int | None = Field(
        None,
        ge=0,
        json_schema_extra={"env": "VESPID_MODEL_PID_START"},
        description="VESPID_MODEL_PID's start time (/proc/PID/stat field 22): the pid is "
        "touched only while it still names that process.",
    )

    @field_validator(
        "report_addr",
        "log_loaded",
        "log_error",
        "log_info",
        "on_close_hosts",
        "gpus",
        "handlers",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("report_addr")
    @classmethod
    def _check_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"each address must start with http:// or https:// (got {url!r})")
        return [url.rstrip("/") for url in value]

    @field_validator("backend_url")
    @classmethod
    def _check_backend_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https:// (got {value!r})")
        return value.rstrip("/")

    @field_validator("gpus")
    @classmethod
    def _check_gpus(cls, value: list[str] | None) -> list[str] | None:
        if value is None or value == ["none"]:
            return None if value is None else []
        for gpu in value:
            if not _GPU_ID.match(gpu):
                raise ValueError(f"each GPU must be an index or a UUID (got {gpu!r})")
        if len(set(value)) != len(value):
            raise ValueError("a GPU is listed twice")
        return value

    @field_validator("benchmark")
    @classmethod
    def _check_benchmark(cls, value: str | None) -> str | None:
        if value is not None and not _MODULE_FUNCTION.match(value):
            raise ValueError(f"must look like package.module:function (got {value!r})")
        return value

    @field_validator("handlers")
    @classmethod
    def _check_handlers(cls, value: list[str]) -> list[str]:
        for spec in value:
            if not _MODULE_FUNCTION.match(spec):
                raise ValueError(f"each must look like package.module:attribute (got {spec!r})")
        return value

    @field_validator("request_key")
    @classmethod
    def _check_request_key(cls, value: str | None) -> str | None:
        if value is not None:
            decode_request_key(value)
        return value

    @field_validator("healthcheck_endpoint", "sleep_path", "wake_path")
    @classmethod
    def _check_path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            return "/" + value
        return value

    @model_validator(mode="after")
    def _check_together(self) -> WorkerSettings:
        if self.tasks is not None and self.backend_url:
            raise ValueError("VESPID_TASKS: leave BACKEND_URL unset; the worker runs the tasks")
        if not self.backend_url and self.tasks is None and self.backend != "null":
            raise ValueError("BACKEND_URL: required (the model server's base URL)")
        if self.backend_health_url is not None and not self.backend_health_url.startswith(
            ("http://", "https://")
        ):
            raise ValueError(
                "BACKEND_HEALTH_URL: must be an absolute http(s) URL "
                f"(got {self.backend_health_url!r})"
            )
        if not (self.unsecured or self.report_addr or self.public_key_file or self.request_key):
            raise ValueError(
                "REPORT_ADDR: required to fetch the router's public key "
                "(or set VESPID_PUBLIC_KEY_FILE, or UNSECURED=true for development)"
            )
        if self.raw_requests and not self.unsecured:
            raise ValueError(
                "VESPID_RAW_REQUESTS: needs UNSECURED=true (a raw body carries no signature); "
                "signed clients put auth_data in the X-Vespid-Auth header instead"
            )
        if self.model_log is None and (self.log_loaded or self.log_error):
            raise ValueError("MODEL_LOG: required when VESPID_LOG_LOADED/ERROR are set")
        if self.model_log is not None and not self.log_loaded:
            raise ValueError(
                "VESPID_LOG_LOADED: required with MODEL_LOG (the log text that means loaded)"
            )
        self._check_sleep()
        return self

    def _check_sleep(self) -> None:
        if (self.model_pid is None) != (self.model_pid_start is None):
            raise ValueError(
                "VESPID_MODEL_PID_START: set it together with VESPID_MODEL_PID "
                "(the pid's start time, /proc/PID/stat field 22)"
            )
        if self.sleep == "http" and (self.sleep_path is None or self.wake_path is None):
            raise ValueError("VESPID_SLEEP_PATH: VESPID_SLEEP=http needs it and VESPID_WAKE_PATH")
        if self.sleep == "signal" and self.model_pid is None:
            raise ValueError(
                "VESPID_MODEL_PID: VESPID_SLEEP=signal needs it (and VESPID_MODEL_PID_START)"
            )

    @property
    def session_limit(self) -> int | None:
        """MAX_SESSIONS, or 1 for the null worker when unset."""
        if self.max_sessions is None and self.backend == "null":
            return 1
        return self.max_sessions

    @property
    def request_key_bytes(self) -> bytes | None:
        """VESPID_REQUEST_KEY decoded."""
        return None if self.request_key is None else decode_request_key(self.request_key)

    @property
    def http_port(self) -> int:
        """WORKER_HTTP_PORT, or WORKER_PORT+1 (0 when WORKER_PORT is 0: any free port)."""
        if self.worker_http_port is not None:
            return self.worker_http_port
        return self.worker_port + 1 if self.worker_port else 0

    @property
    def public_url(self) -> str | None:
        """The URL clients reach this worker at, if the public address is known."""
        if not self.public_ipaddr:
            return None
        scheme = "https" if self.use_ssl else "http"
        return f"{scheme}://{self.public_ipaddr}:{self.public_port or self.worker_port}"


def env_name(field: str) -> str:
    """The environment variable a worker setting reads."""
    return _env_name(WorkerSettings, field)


def load_worker_settings(
    environ: Mapping[str, str],
    overrides: Mapping[str, Any] | None = None,
    *,
    names: Mapping[str, str] | None = None,
) -> WorkerSettings:
    """Settings from an environment and flag overrides (which win); ConfigError on a mistake.

    ``names`` names a field in errors where the environment variable is not what the
    user typed (the CLI passes the flags given)."""
    port = (overrides or {}).get("worker_port") or environ.get("WORKER_PORT", "3000")
    return load_settings(
        WorkerSettings,
        environ,
        overrides,
        names={"public_port": f"VAST_TCP_PORT_{port}", **(names or {})},
    )
