"""The null worker's control server: ``POST /release`` and a stub ``GET /health``.

It listens on 127.0.0.1 only (``NULL_CONTROL_PORT``, default 18999), and its
handlers also refuse any peer that is not a loopback address, so only processes on
the same machine (the queue consumer) can release the worker's sessions.
"""

from __future__ import annotations

import ipaddress
from typing import Final

from aiohttp import web

from vespid.errors import Forbidden
from vespid.web import error_middleware, json_response
from vespid.worker.sessions import SessionManager
from vespid.worker.settings import WorkerSettings

__all__ = ["CONTROL_HOST", "build_control_app", "is_loopback"]

CONTROL_HOST: Final = "127.0.0.1"


def is_loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def _only_loopback(request: web.Request) -> None:
    if not is_loopback(request.remote):
        raise Forbidden("the control server answers local processes only")


def build_control_app(sessions: SessionManager, settings: WorkerSettings) -> web.Application:
    """The control app: /release closes every open session; /health is a stub."""

    async def release(request: web.Request) -> web.Response:
        _only_loopback(request)
        released = sessions.close_all("released")
        if not released:
            return json_response({"released": False, "reason": "no active session"})
        return json_response({"released": True, "session_ids": released})

    async def health(request: web.Request) -> web.Response:
        _only_loopback(request)
        return json_response({"status": "ok"})

    app = web.Application(client_max_size=64 * 1024, middlewares=[error_middleware])
    app.router.add_post("/release", release)
    if settings.backend_health_url is None:
        app.router.add_get("/health", health)
    return app
