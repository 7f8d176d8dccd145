"""The null worker's control server: ``POST /release`` and a stub ``GET /health``.

It listens on 127.0.0.1 only (``NULL_CONTROL_PORT``, default 18999), and its
handlers also refuse any peer that is not a loopback address, so only processes on
the same machine (the queue consumer) can release the worker's sessions. ``/release``
names the session it ends (``{"session_id": ...}``, which the consumer gets with its
job): a session id is a secret of its client's, so no request can end the sessions of
others (not even a session's own on-close callback sent here, which names only itself).
"""

from __future__ import annotations

import ipaddress
from typing import Final

import orjson
from aiohttp import web

from vespid.errors import Forbidden, RequestInvalid
from vespid.guard import ConnectionLimits, guard_middlewares, read_body
from vespid.web import json_response
from vespid.worker.sessions import SessionManager
from vespid.worker.settings import WorkerSettings

__all__ = ["CONTROL_HOST", "build_control_app", "is_loopback", "parse_release"]

CONTROL_HOST: Final = "127.0.0.1"
MAX_BODY_BYTES: Final = 64 * 1024


def is_loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def _only_loopback(request: web.Request) -> None:
    if not is_loopback(request.remote):
        raise Forbidden("the control server answers local processes only")


def parse_release(body: bytes) -> str:
    """The ``session_id`` a ``/release`` body names; RequestInvalid (422) otherwise."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    session_id = data.get("session_id") if isinstance(data, dict) else None
    if not isinstance(session_id, str):
        raise RequestInvalid(
            '/release names the session it ends: send {"session_id": "..."} (the id the '
            "session's client was given, passed on with its job)",
            fields={"session_id": "expected a string"},
        )
    return session_id


def build_control_app(sessions: SessionManager, settings: WorkerSettings) -> web.Application:
    """The control app: /release closes the session it names; /health is a stub."""
    limits = ConnectionLimits.of(settings)
    setting = "the control port's limit"

    async def release(request: web.Request) -> web.Response:
        _only_loopback(request)
        session_id = parse_release(await read_body(request, limits, MAX_BODY_BYTES, setting))
        session = sessions.sessions.get(session_id)
        if session is None:
            return json_response({"released": False, "reason": "no such open session"})
        sessions.close(session, "released")
        return json_response({"released": True, "session_ids": [session_id]})

    async def health(request: web.Request) -> web.Response:
        _only_loopback(request)
        return json_response({"status": "ok"})

    middlewares = guard_middlewares(limits, MAX_BODY_BYTES, setting, read_bodies=False)
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=middlewares)
    app.router.add_post("/release", release)
    if settings.backend_health_url is None:
        app.router.add_get("/health", health)
    return app
