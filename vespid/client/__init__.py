"""The client: call endpoints of a vespid (or Vast) control plane, from Python or ``vespid call``.

``Client`` lists endpoints and routes requests; ``Endpoint.request`` returns a
``Response`` (JSON, text, binary or streamed); ``Endpoint.session`` reserves one
worker. Errors form one tree under ``ClientError`` (see ``vespid.client.errors``).
"""

from __future__ import annotations

from vespid.client.client import Client
from vespid.client.endpoint import DEFAULT_COST, Endpoint
from vespid.client.errors import (
    ClientError,
    ControlPlaneError,
    EndpointNotFound,
    RequestTimeout,
    RouteRefused,
    SessionClosed,
    WorkerError,
    WorkerUnavailable,
)
from vespid.client.response import Response
from vespid.client.session import Session
from vespid.client.sse import SSEEvent, SSEParser, completion_text

__all__ = [
    "DEFAULT_COST",
    "Client",
    "ClientError",
    "ControlPlaneError",
    "Endpoint",
    "EndpointNotFound",
    "RequestTimeout",
    "Response",
    "RouteRefused",
    "SSEEvent",
    "SSEParser",
    "Session",
    "SessionClosed",
    "WorkerError",
    "WorkerUnavailable",
    "completion_text",
]
