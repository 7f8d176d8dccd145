"""The wire protocol shared by worker, router and client: formats, routes, signatures."""

from __future__ import annotations

from vespid.protocol.signing import Signer, Verifier
from vespid.protocol.wire import (
    AUTH_HEADER,
    PROTOCOL_VERSION,
    AuthData,
    WorkerRequest,
    parse_auth_data,
    parse_worker_request,
)

__all__ = [
    "AUTH_HEADER",
    "PROTOCOL_VERSION",
    "AuthData",
    "Signer",
    "Verifier",
    "WorkerRequest",
    "parse_auth_data",
    "parse_worker_request",
]
