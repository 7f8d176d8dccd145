"""What the client raises: one small tree under ``vespid.errors.VespidError``.

::

    VespidError
    └── ClientError                    a call through the control plane failed
        ├── ControlPlaneError          the control plane answered badly or not at all
        │   └── RouteRefused           /route/ said no: 401 key, 404 endpoint, 429 queue full
        ├── EndpointNotFound           no endpoint of that name in the listing
        ├── RequestTimeout             the request's overall deadline passed
        ├── WorkerUnavailable          no worker could be reached (every attempt), or one
        │                              cut a streamed answer
        └── WorkerError                a worker's final non-2xx answer (status and body)
            └── SessionClosed          410: the session is unknown or closed

Each class has a stable ``code`` (used by ``vespid call``'s one-line JSON errors)
and keyword fields for the numbers in its message. ``RequestTimeout`` is also a
``TimeoutError`` and ``EndpointNotFound`` a ``LookupError``, so generic handlers
catch them too.
"""

from __future__ import annotations

from typing import Any, ClassVar

from vespid.errors import VespidError

__all__ = [
    "ClientError",
    "ControlPlaneError",
    "EndpointNotFound",
    "RequestTimeout",
    "RouteRefused",
    "SessionClosed",
    "WorkerError",
    "WorkerUnavailable",
]


class ClientError(VespidError):
    """A request through the control plane failed; the message says what to do."""

    code: ClassVar[str] = "client_error"

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def body(self) -> dict[str, Any]:
        """The error as JSON: ``{"error": message, "code": code, **fields}``."""
        return {"error": self.message, "code": self.code, **self.fields}


class ControlPlaneError(ClientError):
    """The control plane (console API or router) failed or answered outside the protocol."""

    code = "control_plane_error"

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message, status=status, body=body)
        self.status = status
        self.response_body = body


class RouteRefused(ControlPlaneError):
    """``/route/`` refused: 401 wrong API key, 404 unknown endpoint, 429 router queue full."""

    code = "route_refused"


class EndpointNotFound(ClientError, LookupError):
    """The endpoint listing has no endpoint of that name."""

    code = "endpoint_not_found"


class RequestTimeout(ClientError, TimeoutError):
    """The request's overall deadline (``timeout_s``) passed."""

    code = "timeout"


class WorkerUnavailable(ClientError):
    """No worker could be reached in the allowed attempts, or one cut a streamed answer."""

    code = "worker_unavailable"


class WorkerError(ClientError):
    """A worker's final answer was not 2xx; ``status`` and ``body`` are what it sent."""

    code = "worker_error"

    def __init__(
        self,
        message: str,
        *,
        status: int,
        body: Any,
        url: str,
        attempts: int = 1,
    ) -> None:
        super().__init__(message, status=status, body=body, url=url, attempts=attempts)
        self.status = status
        self.response_body = body
        self.url = url
        self.attempts = attempts


class SessionClosed(WorkerError):
    """The worker no longer knows the session (410); open a new one."""

    code = "session_closed"
