"""The status page: one HTML file, its script and its style, shipped inside the package.

``GET /`` serves the page; it polls ``GET /api/v0/status`` and ``GET /api/v0/history``
every second and draws its charts on ``<canvas>`` with no library, so it needs no build
step and nothing from the network. The files are read once, on first use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Final

from aiohttp import web

__all__ = ["PAGE_FILES", "StatusPage"]

# URL path -> (file in vespid/control/static, content type)
PAGE_FILES: Final = {
    "/": ("index.html", "text/html"),
    "/static/status.js": ("status.js", "text/javascript"),
    "/static/status.css": ("status.css", "text/css"),
}

Handler = Callable[[web.Request], Awaitable[web.Response]]


def _read(name: str) -> bytes:
    return resources.files("vespid.control").joinpath("static", name).read_bytes()


class StatusPage:
    """Serves the page's files from memory once read."""

    def __init__(self) -> None:
        self._cache: dict[str, bytes] = {}

    def add_routes(self, router: web.UrlDispatcher) -> None:
        for path, (name, content_type) in PAGE_FILES.items():
            router.add_get(path, self._handler(name, content_type))

    def _handler(self, name: str, content_type: str) -> Handler:
        async def handle(request: web.Request) -> web.Response:
            body = self._cache.get(name)
            if body is None:
                body = self._cache[name] = await asyncio.to_thread(_read, name)
            return web.Response(
                body=body,
                content_type=content_type,
                charset="utf-8",
                headers={"Cache-Control": "no-cache"},
            )

        return handle
