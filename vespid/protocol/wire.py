"""The wire format in one place: routes, header names, request envelopes and report bodies.

Field names are the protocol's own (Vast.ai Serverless), misspellings included
(``num_requests_recieved``). Two kinds of parsing live here. The hot path (a client's
request to a worker: ``parse_worker_request``, ``parse_auth_data``) is hand-written
rather than a model validation because it runs on every proxied request; each failure
names the field and what was expected. An UNSECURED worker parses auth_data with
``parse_unsecured_auth_data`` instead, which lets the fields it does not need be left
out. The cold-path bodies (worker reports, the ``/route/`` call) are pydantic models
that both ends use: the sender builds the model it sends, the receiver validates with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Annotated, Any, Final, NotRequired

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    with_config,
)
from typing_extensions import TypedDict  # pydantic needs it before Python 3.12

from vespid.errors import RequestInvalid

__all__ = [
    "AUTH_FIELDS",
    "AUTH_HEADER",
    "DELETE_REQUESTS_PATH",
    "MAX_REPORTED",
    "PARK_PATH",
    "PROTOCOL_VERSION",
    "PUBKEY_PATH",
    "REPORT_INTERVAL_S",
    "ROUTE_PATH",
    "SESSION_HEADER",
    "UNSECURED_AUTH_DEFAULTS",
    "UPDATE_PATH",
    "WAKE_PATH",
    "WORKER_STATUS_PATH",
    "AuthData",
    "DeleteRequestsReport",
    "FinishedRequest",
    "RouteRequest",
    "WorkerRequest",
    "WorkerStatusReport",
    "dumps",
    "parse_auth_data",
    "parse_unsecured_auth_data",
    "parse_worker_request",
]

PROTOCOL_VERSION: Final = "1.1.0"

# Autoscaler routes the worker calls.
PUBKEY_PATH: Final = "/pubkey/"
WORKER_STATUS_PATH: Final = "/worker_status/"
DELETE_REQUESTS_PATH: Final = "/delete_requests/"
# Asks a worker for a rolling update (Bearer MASTER_TOKEN).
UPDATE_PATH: Final = "/pyworker/update"
# Park a worker (no new requests, model server asleep) and wake it (Bearer MASTER_TOKEN).
PARK_PATH: Final = "/vespid/park"
WAKE_PATH: Final = "/vespid/wake"
# Router route the client calls.
ROUTE_PATH: Final = "/route/"

# A worker sends a status report at least this often (every second while its load
# changes); the control plane counts a worker silent for three of these as gone.
REPORT_INTERVAL_S: Final = 10.0

# Methods other than POST carry their auth_data as JSON in this header (the body is
# forwarded as-is).
AUTH_HEADER: Final = "X-Vespid-Auth"
# ... and the session they ride, if any, in this one.
SESSION_HEADER: Final = "X-Vespid-Session"

# Fields every auth_data must carry, with the JSON types accepted for each.
AUTH_FIELDS: Final[dict[str, tuple[type, ...]]] = {
    "cost": (str, int, float),
    "endpoint": (str,),
    "reqnum": (int,),
    "request_idx": (int,),
    "signature": (str,),
    "url": (str,),
}

# What an UNSECURED worker takes for an auth_data field left out: nothing is checked
# there, so only a field that is given must have its type (a secured worker needs all).
UNSECURED_AUTH_DEFAULTS: Final[dict[str, Any]] = {
    "cost": 0,
    "endpoint": "",
    "reqnum": 0,
    "request_idx": 0,
    "signature": "",
    "url": "",
}


@dataclass(frozen=True, slots=True)
class AuthData:
    """A request's auth_data: what the router signed, plus the raw dict it came from.

    ``raw`` keeps the fields in their received order, which the older Vast
    signature scheme depends on.
    """

    raw: dict[str, Any]
    cost: float
    endpoint: str
    reqnum: int
    request_idx: int
    signature: str
    url: str


@dataclass(frozen=True, slots=True)
class WorkerRequest:
    """A client request to a worker: ``{"auth_data", "payload", "session_id"?}``."""

    auth: AuthData
    payload: Any
    session_id: str | None


def _type_name(types: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", dict: "an object"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def parse_auth_data(value: Any) -> AuthData:
    """Validate an auth_data object; raise RequestInvalid naming every bad field."""
    if not isinstance(value, dict):
        raise RequestInvalid(
            "auth_data must be a JSON object with cost, endpoint, reqnum, request_idx, "
            "signature and url",
            fields={"auth_data": "expected an object"},
        )
    problems: dict[str, str] = {}
    for name, types in AUTH_FIELDS.items():
        if name not in value:
            problems[f"auth_data.{name}"] = "missing"
        elif not isinstance(value[name], types) or isinstance(value[name], bool):
            problems[f"auth_data.{name}"] = f"expected {_type_name(types)}"
    cost = 0.0
    if not problems:
        try:
            cost = float(value["cost"])
        except ValueError:
            problems["auth_data.cost"] = "expected a number (or a string holding one)"
        else:
            if not cost >= 0.0 or cost == float("inf"):
                problems["auth_data.cost"] = "expected a finite number >= 0"
    if problems:
        raise RequestInvalid.listing("auth_data", problems)
    return AuthData(
        raw=value,
        cost=cost,
        endpoint=value["endpoint"],
        reqnum=value["reqnum"],
        request_idx=value["request_idx"],
        signature=value["signature"],
        url=value["url"],
    )


def parse_unsecured_auth_data(value: Any) -> AuthData:
    """``parse_auth_data`` for an UNSECURED worker: a field left out takes its
    ``UNSECURED_AUTH_DEFAULTS`` value; ``raw`` stays the object as sent (a session's
    ``session_auth`` is compared with it)."""
    if not isinstance(value, dict) or value.keys() >= UNSECURED_AUTH_DEFAULTS.keys():
        return parse_auth_data(value)
    filled = {**UNSECURED_AUTH_DEFAULTS, **value}
    return replace(parse_auth_data(filled), raw=value)


def parse_worker_request(
    body: bytes, parse_auth: Callable[[Any], AuthData] = parse_auth_data
) -> WorkerRequest:
    """Parse a POST body ``{"auth_data", "payload", "session_id"?}``; its auth_data with
    ``parse_auth`` (``parse_unsecured_auth_data`` on an UNSECURED worker)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestInvalid(
            f"request body is not valid JSON ({exc}); send "
            '{"auth_data": {...}, "payload": {...}}'
        ) from None
    if not isinstance(data, dict):
        raise RequestInvalid(
            'request body must be a JSON object {"auth_data": {...}, "payload": {...}}',
            fields={"body": "expected an object"},
        )
    missing = {k: "missing" for k in ("auth_data", "payload") if k not in data}
    if missing:
        raise RequestInvalid(
            f"request body lacks {' and '.join(missing)}; send "
            '{"auth_data": {...}, "payload": {...}}',
            fields=missing,
        )
    session_id = data.get("session_id")
    if session_id is not None and not isinstance(session_id, str):
        raise RequestInvalid(
            "session_id must be a string or null", fields={"session_id": "expected a string"}
        )
    return WorkerRequest(
        auth=parse_auth(data["auth_data"]), payload=data["payload"], session_id=session_id
    )


def dumps(value: Any) -> bytes:
    """Serialise JSON fast; what orjson cannot write (integers beyond 64 bits, nesting
    deeper than 254 levels) falls back to the standard library. RequestInvalid (422) for
    a value nested too deep for either (about 900 levels: orjson reads up to 1,024)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        import json

        try:
            return json.dumps(value, separators=(",", ":")).encode()
        except RecursionError:
            raise RequestInvalid(
                "JSON nested too deep to pass on; keep payloads under about 900 levels",
                fields={"payload": "nested too deep"},
            ) from None


# -- cold-path bodies: validated with pydantic ------------------------------------------
#
# Unknown fields are ignored (Vast's PyWorker and client send more than vespid reads) and
# numbers must be finite: an inf or NaN load would poison every sum the autoscaler takes.
_COLD_PATH: Final = ConfigDict(extra="ignore", allow_inf_nan=False, frozen=True)

# The most any load, throughput or time in a report may be: far beyond any real worker,
# and small enough that the autoscaler's sums over a fleet stay finite.
MAX_REPORTED: Final = 1e15
_Amount = Annotated[float, Field(ge=0, le=MAX_REPORTED)]
_Count = Annotated[int, Field(ge=0, le=2**53)]


class WorkerStatusReport(BaseModel):
    """Body of ``POST <REPORT_ADDR>/worker_status/`` (PROTOCOL.md section 3).

    The worker's reporter builds one and sends ``model_dump(mode="json")``; the control
    plane validates what it receives with the same model. Only ``id`` and ``mtoken`` are
    required: a field a sender leaves out reads as nothing to report. Every number is
    finite and at least 0; loads, throughputs and times are at most ``MAX_REPORTED``.
    """

    model_config = _COLD_PATH

    id: StrictInt = Field(ge=0)  # CONTAINER_ID
    mtoken: StrictStr  # the worker's MASTER_TOKEN (its own report token)
    version: str = ""
    loadtime: _Amount = 0.0  # seconds from start to ready, sent once, else 0
    new_load: _Amount = 0.0  # workload received since the last report
    cur_load: _Amount = 0.0  # workload in progress, sessions included
    rej_load: _Amount = 0.0  # workload refused (429) since the last report
    max_perf: _Amount = 0.0  # workload/s at full load; 0 until benchmarked
    cur_perf: _Amount = 0.0  # workload served since the last report
    error_msg: str | None = ""  # non-empty once the model is broken
    num_requests_working: _Count = 0  # requests and sessions in progress
    num_requests_recieved: _Count = 0  # (sic: the protocol's spelling)
    additional_disk_usage: _Amount = 0.0
    disk_usage: _Amount = 0.0  # GB
    working_request_idxs: list[int] = Field(default_factory=list)
    cur_capacity: _Count = 0
    max_capacity: _Count = 0
    url: str | None = ""
    num_sessions: _Count = 0  # vespid's addition: open sessions (occupancy, not backlog)
    # vespid's additions: the part of cur_load waiting for a backend slot (not started:
    # backlog; the rest runs), and whether the worker is parked (asleep, takes no work).
    waiting_load: _Amount = 0.0
    parked: StrictBool = False
    # vespid's addition: seconds the oldest request waiting for a backend slot has waited
    # there (since the worker received it); 0 when none waits.
    waiting_age: _Amount = 0.0
    # vespid's additions: the worker's concurrency limit (its backend slots; 0: none, so
    # its waiting_load does not tell waiting work apart) and the slots free now. The
    # router estimates a worker's wait from them (``vespid.control.policy_wait``).
    slots: _Count = 0
    free_slots: _Count = 0


@with_config(_COLD_PATH)
class FinishedRequest(TypedDict):
    """One entry of a ``/delete_requests/`` report (the worker's books keep these as dicts)."""

    request_idx: int
    success: bool
    status: NotRequired[int]
    entered_queue_at: NotRequired[float]
    work_started_at: NotRequired[float]
    work_completed_at: NotRequired[float]


class DeleteRequestsReport(BaseModel):
    """Body of ``POST <REPORT_ADDR>/delete_requests/``: requests that finished."""

    model_config = _COLD_PATH

    worker_id: StrictInt = Field(ge=0)
    mtoken: StrictStr
    requests: list[FinishedRequest]


class RouteRequest(BaseModel):
    """Body of ``POST /route/`` (PROTOCOL.md section 5); Vast's client adds fields such as
    ``replay_timeout``, which are ignored."""

    model_config = _COLD_PATH

    endpoint: StrictStr  # the endpoint's name
    api_key: StrictStr | None = None  # else the Authorization header or ?api_key=
    # workload; the control plane also refuses more than its VESPID_MAX_ROUTE_COST
    cost: StrictFloat = Field(0.0, ge=0)
    request_idx: StrictInt | None = None  # 0 or absent: a new request; else a queued one
