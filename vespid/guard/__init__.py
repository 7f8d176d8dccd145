"""One connection guard for every aiohttp port vespid serves (the worker's ports, the
task server, the control plane) and the limits the worker's lean front checks itself.

- ``limits``: ``ConnectionLimits`` (header bytes and count, request-line bytes, header
  and body timeouts, the connection cap, the idle keep-alive timeout), the errors it
  makes, ``raw_answer`` and ``MalformedLog``;
- ``server``: ``GuardedRunner``, ``GuardedServer``, ``GuardedHandler`` (aiohttp's
  connection with those limits, and its framing errors as JSON);
- ``middleware``: the declared-size check, ``read_body`` and its middleware, aiohttp's
  own refusals as JSON, and ``guard_middlewares``, an app's list of them.

A port serves an app with ``GuardedRunner(app, limits, malformed)`` and builds the app
with ``guard_middlewares``; docs/worker.md and docs/control.md list the settings.
"""

from __future__ import annotations

from vespid.guard.limits import (
    IDLE_TIMEOUT_S,
    LINGER_BYTES,
    LINGER_S,
    MALFORMED_LOG_EVERY_S,
    ConnectionLimits,
    GuardSettings,
    MalformedLog,
    raw_answer,
)
from vespid.guard.middleware import (
    body_deadline_middleware,
    declared_size_middleware,
    framework_error_middleware,
    guard_middlewares,
    read_body,
    unread_body_middleware,
)
from vespid.guard.server import GuardedHandler, GuardedRunner, GuardedServer

__all__ = [
    "IDLE_TIMEOUT_S",
    "LINGER_BYTES",
    "LINGER_S",
    "MALFORMED_LOG_EVERY_S",
    "ConnectionLimits",
    "GuardSettings",
    "GuardedHandler",
    "GuardedRunner",
    "GuardedServer",
    "MalformedLog",
    "body_deadline_middleware",
    "declared_size_middleware",
    "framework_error_middleware",
    "guard_middlewares",
    "raw_answer",
    "read_body",
    "unread_body_middleware",
]
