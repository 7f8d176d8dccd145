"""vespid's one exception tree, and how each error looks on the wire.

::

    VespidError
    ├── ConfigError                    bad setting; start-up stops with one line
    └── HTTPFacingError                has status_code and code; rendered as JSON
        ├── BadRequest           400   unknown session at /session/end
        ├── RequestInvalid       422   malformed body or field
        │   └── PayloadInvalid   422   a handler's parser refused the payload
        ├── BodyTooLarge         413   body over the configured limit †
        ├── RequestTimeout       408   headers or body did not arrive in time †
        ├── TargetTooLong        414   request target over its limit †
        ├── HeadersTooLarge      431   headers over their limit in all or in number †
        ├── TooManyConnections   503   the port holds as many connections as it may †
        ├── SignatureInvalid     401   missing, forged, expired or replayed signature
        ├── Unauthorized         401   wrong token
        ├── Forbidden            403   caller not allowed here (e.g. not on loopback)
        ├── NotFound             404   unknown route or object
        ├── SessionGone          410   unknown or closed session_id
        ├── Overloaded           429   estimated wait above the limit
        ├── NotReady             503   the backend is loading or errored
        ├── AnswerTooLarge       507   an answer would pass its configured limit
        └── BackendError         502   backend failed
            ├── BackendUnavailable  502   connection refused or reset
            └── BackendTimeout      504   backend did not answer in time

Every HTTP error body is ``{"error": "<message>", "code": "<code>"}`` plus the
error's extra fields; ``error`` is a string, as Vast's clients expect. An error marked
† has ``closes_connection``: its answer closes the connection, as the request was not
read whole or the port is full (``vespid.guard`` raises them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from pydantic import ValidationError
    from yaml import YAMLError

__all__ = [
    "AnswerTooLarge",
    "BackendError",
    "BackendTimeout",
    "BackendUnavailable",
    "BadRequest",
    "BodyTooLarge",
    "ConfigError",
    "Forbidden",
    "HTTPFacingError",
    "HeadersTooLarge",
    "NotFound",
    "NotReady",
    "Overloaded",
    "PayloadInvalid",
    "RequestInvalid",
    "RequestTimeout",
    "SessionGone",
    "SignatureInvalid",
    "TargetTooLong",
    "TooManyConnections",
    "Unauthorized",
    "VespidError",
]


class VespidError(Exception):
    """Root of every error vespid raises on purpose."""


class ConfigError(VespidError, ValueError):
    """A setting is missing or wrong; the message names the variable and the fix."""

    @classmethod
    def from_yaml(cls, source: object, exc: YAMLError) -> ConfigError:
        """One line for pyyaml's several: ``<source>: not valid YAML at line L, column C:
        <problem>`` (line and column counted from 1, as editors do)."""
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return cls(f"{source}: not valid YAML{where}: {problem}")


class HTTPFacingError(VespidError):
    """An error that becomes an HTTP answer: a status, a stable code and a message."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    # The answer closes the connection: what is left of the request is not read.
    closes_connection: ClassVar[bool] = False

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON body sent to the caller."""
        return {"error": self.message, "code": self.code, **self.extra}


class BadRequest(HTTPFacingError):
    status_code = 400
    code = "bad_request"


class RequestInvalid(HTTPFacingError):
    status_code = 422
    code = "invalid_request"

    @classmethod
    def listing(cls, what: str, problems: Mapping[str, str]) -> RequestInvalid:
        """One error naming every problem found: ``invalid <what> (field: problem, ...)``,
        with the problems also as ``fields``."""
        fixes = ", ".join(f"{field}: {problem}" for field, problem in problems.items())
        return cls(f"invalid {what} ({fixes})", fields=dict(problems))

    @classmethod
    def from_validation(
        cls, exc: ValidationError, what: str, *, prefix: str = ""
    ) -> RequestInvalid:
        """The error for a pydantic model's refusal; each field named by its dotted path
        (behind ``prefix``), each problem in pydantic's words."""
        problems: dict[str, str] = {}
        for error in exc.errors(include_url=False, include_input=False):
            field = ".".join(str(part) for part in error["loc"]) or "body"
            problems.setdefault(prefix + field, error["msg"])
        return cls.listing(what, problems)


class PayloadInvalid(RequestInvalid):
    """A handler's parser refused the payload; ``fields`` names each problem where known."""

    code = "invalid_payload"


class BodyTooLarge(HTTPFacingError):
    status_code = 413
    code = "body_too_large"
    closes_connection = True


class RequestTimeout(HTTPFacingError):
    status_code = 408
    code = "request_timeout"
    closes_connection = True


class TargetTooLong(HTTPFacingError):
    status_code = 414
    code = "target_too_long"
    closes_connection = True


class HeadersTooLarge(HTTPFacingError):
    status_code = 431
    code = "headers_too_large"
    closes_connection = True


class TooManyConnections(HTTPFacingError):
    status_code = 503
    code = "too_many_connections"
    closes_connection = True


class SignatureInvalid(HTTPFacingError):
    status_code = 401
    code = "bad_signature"


class Unauthorized(HTTPFacingError):
    status_code = 401
    code = "unauthorized"


class Forbidden(HTTPFacingError):
    status_code = 403
    code = "forbidden"


class NotFound(HTTPFacingError):
    status_code = 404
    code = "not_found"


class SessionGone(HTTPFacingError):
    status_code = 410
    code = "session_gone"


class Overloaded(HTTPFacingError):
    status_code = 429
    code = "overloaded"


class NotReady(HTTPFacingError):
    status_code = 503
    code = "not_ready"


class AnswerTooLarge(HTTPFacingError):
    status_code = 507
    code = "answer_too_large"


class BackendError(HTTPFacingError):
    status_code = 502
    code = "backend_error"


class BackendUnavailable(BackendError):
    status_code = 502
    code = "backend_unavailable"


class BackendTimeout(BackendError):
    status_code = 504
    code = "backend_timeout"
